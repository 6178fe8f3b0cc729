// SharedServerTest: a gtest fixture whose tests share one real mpigate-server, started before the
// suite's first test and stopped (it must exit 0) after its last.
//
// A suite derives from it with itself as the template argument (CRTP), which gives every suite
// its own server (the static members are per instantiation) and lets the fixture ask the suite
// how to start it:
//
//   class MyTest : public testing::SharedServerTest<MyTest> {
//    public:
//     static testing::ServerOptions SharedServerOptions() { return {.workers = 2}; }
//     // Optional: the client name Connect() uses when given none.
//     static constexpr char kClientName[] = "my_test";
//   };
//
// Tests reach the server as `server_`, connect clients to it with Connect() and keep its workers
// busy with OccupyWorkers().
//
// Thread-safety: SetUpTestSuite, TearDownTestSuite and Connect are called on the test thread
// only.
#ifndef MPIGATE_TESTS_SHARED_SERVER_H_
#define MPIGATE_TESTS_SHARED_SERVER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace mpigate::testing {

template <typename Suite>
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess();
    const absl::Status started = server_->Start(Suite::SharedServerOptions());
    ASSERT_TRUE(started.ok()) << started;
  }

  static void TearDownTestSuite() {
    absl::StatusOr<ServerExit> exit = server_->Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
    delete server_;
    server_ = nullptr;
  }

  // A client of the shared server; null, with a test failure, if it cannot connect. The default
  // name is the suite's `kClientName`, needed only where Connect() is called without one.
  static std::unique_ptr<Executor> Connect(const std::string& client_name = Suite::kClientName) {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server_->target(), .client_name = client_name});
    EXPECT_TRUE(executor.ok()) << executor.status();
    return executor.ok() ? *std::move(executor) : nullptr;
  }

  // Gives every worker of the pool a `sleep` of `sleep_ms` and returns once all of them run.
  static std::vector<Future> OccupyWorkers(Executor& executor, const std::string& sleep_ms) {
    std::vector<Future> busy;
    for (int i = 0; i < executor.workers(); ++i) busy.push_back(executor.Submit("sleep", sleep_ms));
    for (const Future& future : busy) EXPECT_TRUE(future.WaitStarted(absl::Seconds(30)));
    return busy;
  }

  static inline ServerProcess* server_ = nullptr;
};

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_SHARED_SERVER_H_
