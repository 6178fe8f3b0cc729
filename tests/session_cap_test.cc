// A session's cap on its running tasks (ExecutorOptions::max_running_tasks, OpenSession
// .max_running_tasks) end to end: the C++ client against one real mpigate-server with 4 MPI
// workers that load the test task library (tests/testdata/sample_tasks.cc), shared by the suite.
//
// The witness that a capped session holds no more than its cap is another client: its tasks must
// start on the workers the capped one leaves free, which they could not if the capped session had
// taken them. Tasks run `sleep` for ten minutes, so only an interrupt ends them; waits that a
// broken scheduler would never end are bounded (kPatience), and every sleep is interrupted at the
// end of its test, passed or failed, so that a failure does not hang.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "mpigate/v1/gateway.pb.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

// A sleep that outlasts any test: only an interrupt ends it in time.
constexpr char kForeverMs[] = "600000";
// Far longer than any of these waits takes when the service works.
constexpr absl::Duration kPatience = absl::Minutes(1);

class SessionCapTest : public testing::SharedServerTest<SessionCapTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 4,
            .flags = {"--task-lib=" + testing::RunfilePath("tests/testdata/libsample_tasks.so")}};
  }
  static constexpr char kClientName[] = "session_cap_test";

 protected:
  // Interrupts every sleep the test submitted (the executors' destructors would wait for them),
  // then closes the executors.
  void TearDown() override {
    Release(sleeps_);
    capped_.reset();
    other_.reset();
  }

  static std::unique_ptr<Executor> ConnectCapped(const std::string& name, uint32_t cap) {
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
        {.endpoint = server_->target(), .client_name = name, .max_running_tasks = cap});
    EXPECT_TRUE(executor.ok()) << executor.status();
    return executor.ok() ? *std::move(executor) : nullptr;
  }

  // The pool status's entry for the session of `client_name`.
  static v1::SessionStatus SessionStatusOf(const std::string& client_name) {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::PoolStatus status;
    EXPECT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
    for (const v1::SessionStatus& session : status.session_list()) {
      if (session.client_name() == client_name) return session;
    }
    ADD_FAILURE() << "no session of " << client_name << " in " << status.DebugString();
    return v1::SessionStatus();
  }

  std::vector<Future> SubmitSleeps(Executor& executor, int n) {
    std::vector<Future> futures;
    for (int i = 0; i < n; ++i) futures.push_back(executor.Submit("sleep", kForeverMs));
    sleeps_.insert(sleeps_.end(), futures.begin(), futures.end());
    return futures;
  }

  static int CountRunning(const std::vector<Future>& futures) {
    int running = 0;
    for (const Future& future : futures) running += future.Running() ? 1 : 0;
    return running;
  }

  // Interrupts each and waits for it to end CANCELLED. Newest first: those still queued are
  // cancelled before the running ones end and make room for them.
  static void Release(std::vector<Future>& futures) {
    for (auto future = futures.rbegin(); future != futures.rend(); ++future) {
      if (future->Done()) continue;
      EXPECT_TRUE(future->Interrupt());
      EXPECT_EQ(future->Exception(kPatience).code(), absl::StatusCode::kCancelled);
    }
  }

  std::unique_ptr<Executor> capped_;
  std::unique_ptr<Executor> other_;
  std::vector<Future> sleeps_;
};

TEST_F(SessionCapTest, AtMostTheCapRunsAndAnotherClientTakesTheFreeWorkers) {
  capped_ = ConnectCapped("capped", 2);
  other_ = Connect("other");
  ASSERT_NE(capped_, nullptr);
  ASSERT_NE(other_, nullptr);
  std::vector<Future> mine = SubmitSleeps(*capped_, 6);
  ASSERT_TRUE(mine[0].WaitStarted(kPatience));
  ASSERT_TRUE(mine[1].WaitStarted(kPatience));

  // The other two workers are free for another client, whose tasks start there.
  std::vector<Future> theirs = SubmitSleeps(*other_, 2);
  for (Future& future : theirs) {
    ASSERT_TRUE(future.WaitStarted(kPatience)) << "the capped session holds a third worker";
  }
  EXPECT_EQ(CountRunning(mine), 2);
  v1::SessionStatus status = SessionStatusOf("capped");
  EXPECT_EQ(status.max_running_tasks(), 2u);
  EXPECT_EQ(status.running_tasks(), 2u);
  EXPECT_EQ(status.queued_tasks(), 4u);
  EXPECT_EQ(SessionStatusOf("other").max_running_tasks(), 0u);

  // One of its tasks ends: the next takes its place, and still no more than two run.
  EXPECT_TRUE(mine[0].Interrupt());
  EXPECT_EQ(mine[0].Exception(kPatience).code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(mine[2].WaitStarted(kPatience));
  EXPECT_EQ(CountRunning(mine), 2);
  status = SessionStatusOf("capped");
  EXPECT_EQ(status.running_tasks(), 2u);
  EXPECT_EQ(status.queued_tasks(), 3u);
}

TEST_F(SessionCapTest, AGangCountsItsSizeAndWaitsForRoomWithoutHoldingWorkersBack) {
  capped_ = ConnectCapped("capped gang", 2);
  other_ = Connect("other of the gang");
  ASSERT_NE(capped_, nullptr);
  ASSERT_NE(other_, nullptr);

  // A gang larger than the cap would never find room.
  const absl::Status too_large =
      capped_->Submit("sample.gang_info", "", {.gang_size = 3}).Exception(kPatience);
  EXPECT_EQ(too_large.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_large.message(), HasSubstr("max_running_tasks"));

  // With one task running, a gang of two passes the cap: it waits, though three workers are idle,
  // and they take another client's tasks meanwhile.
  std::vector<Future> mine = SubmitSleeps(*capped_, 1);
  ASSERT_TRUE(mine[0].WaitStarted(kPatience));
  Future gang = capped_->Submit("sample.gang_info", "", {.gang_size = 2});
  std::vector<Future> theirs = SubmitSleeps(*other_, 3);
  for (Future& future : theirs) {
    ASSERT_TRUE(future.WaitStarted(kPatience)) << "the gang took workers past the cap";
  }
  EXPECT_FALSE(gang.Running());
  EXPECT_EQ(SessionStatusOf("capped gang").queued_tasks(), 1u);

  // Once the sleep has ended and workers are free, the gang runs.
  Release(mine);
  Release(theirs);
  absl::StatusOr<std::string> result = gang.Result(kPatience);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, HasSubstr("gang_size=2"));
}

}  // namespace
}  // namespace mpigate
