// Healing a pool that lost a worker (issue 24), end to end, on a real mpigate-server with 2 MPI
// workers: a replacement that hangs before its hello is given up after the bootup timeout,
// counted as a failed replacement, and ends itself; meanwhile the pool serves with the worker it
// has, PoolStatus says why it is degraded, and the health service's "mpigate.pool.full_size" is
// NOT_SERVING while the whole server stays SERVING; once replacements start again the pool is
// whole, full_size SERVING, and a SIGTERM stops it with nothing left behind.
//
// The hang: workers started while the file named by MPIGATE_TEST_STALL_BEFORE_HELLO exists wait
// before their hello (worker/worker_loop.cc), as one whose initializer never returns would.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.pb.h"
#include "standard_services/health.grpc.pb.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::MatchesRegex;

constexpr absl::Duration kPatience = absl::Minutes(2);
constexpr char kFullSize[] = "mpigate.pool.full_size";

HealthCheckResponse::ServingStatus Check(grpc::health::v1::Health::Stub& health,
                                         const std::string& service) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status call = health.Check(&context, request, &response);
  return call.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
}

// Polls `done` until it holds, for at most kPatience; true if it did.
template <typename Predicate>
bool AwaitTrue(Predicate done) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

TEST(WorkerHealTest, AReplacementThatHangsBeforeItsHelloIsGivenUpWhileHealthSaysTheSizeIsDown) {
  const std::string stall = absl::StrCat(std::getenv("TEST_TMPDIR"), "/stall-before-hello");
  testing::ServerProcess server;
  ASSERT_TRUE(
      server
          .Start({.workers = 2,
                  .flags = {absl::StrCat("--task-lib=",
                                         testing::RunfilePath("tests/testdata/libsample_tasks.so")),
                            "--bootup_timeout=4s",
                            absl::StrCat("--worker_env=MPIGATE_TEST_STALL_BEFORE_HELLO=", stall)}})
          .ok());
  std::unique_ptr<grpc::health::v1::Health::Stub> health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(Check(*health, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(*health, kFullSize), HealthCheckResponse::SERVING);
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "heal"});
  ASSERT_TRUE(executor.ok()) << executor.status();

  // From now on new workers hang before their hello.
  std::ofstream(stall) << "stall\n";
  const std::vector<pid_t> workers = testing::DescendantsNamed(server.pid(), "mpigate-worker");
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);

  // The replacements are given up after the bootup timeout, and the next attempt waits.
  const absl::Status given_up =
      testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
        return status.workers_down() == 1 &&
               absl::StrContains(status.degraded_reason(), "did not say hello within 4s") &&
               absl::StrContains(status.degraded_reason(),
                                 "replacements keep failing (1 in a row)");
      });
  ASSERT_TRUE(given_up.ok()) << given_up;
  EXPECT_EQ(Check(*health, kFullSize), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(*health, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(*health, "mpigate.v1.Gateway"), HealthCheckResponse::SERVING);
  // The pool serves meanwhile, on the worker it has.
  const absl::StatusOr<std::string> echoed =
      (*executor)->Submit("echo", "meanwhile").Result(kPatience);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(*echoed, "meanwhile");

  // Replacements start again: the pool is whole, and the hung processes have ended themselves.
  ASSERT_EQ(std::remove(stall.c_str()), 0);
  const absl::Status whole =
      testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
        return status.workers() == 2 && status.workers_down() == 0 &&
               status.degraded_reason().empty();
      });
  ASSERT_TRUE(whole.ok()) << whole;
  EXPECT_TRUE(AwaitTrue([&] { return Check(*health, kFullSize) == HealthCheckResponse::SERVING; }));
  EXPECT_TRUE(AwaitTrue([&] {
    return testing::DescendantsNamed(server.pid(), "mpigate-worker").size() == 2;
  })) << "the replacements that hung are still there: "
      << testing::DescribeProcesses(testing::DescendantsNamed(server.pid(), "mpigate-worker"));

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text,
              MatchesRegex("(.|\n)*WARNING.*replacement for worker [01] failed to start: it did "
                           "not say hello within 4s(.|\n)*"));
}

// A pool that has replaced a lost worker, one of whose processes then answers nothing (stopped
// with SIGSTOP): the stop cannot end in order, so the gateway aborts the job through the newest
// job's communicator (MPI_Abort), and Open MPI ends every process of the service, the stopped one
// too, instead of leaving any behind.
TEST(WorkerHealTest, AStopThatCannotEndInOrderAbortsThroughTheReplacementJob) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  std::vector<pid_t> workers = testing::DescendantsNamed(server.pid(), "mpigate-worker");
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);
  // Whole again, on a replacement job: both processes are new.
  const absl::Status whole =
      testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
        return status.workers_down() == 0 && status.degraded_reason().empty();
      });
  ASSERT_TRUE(whole.ok()) << whole;
  ASSERT_TRUE(AwaitTrue([&] {
    const std::vector<pid_t> now = testing::DescendantsNamed(server.pid(), "mpigate-worker");
    return now.size() == 2 && now[0] != workers[1] && now[1] != workers[1];
  }));
  workers = testing::DescendantsNamed(server.pid(), "mpigate-worker");
  ASSERT_EQ(kill(workers[1], SIGSTOP), 0);

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_NE(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text,
              MatchesRegex("(.|\n)*ERROR.*aborting the workers: DEADLINE_EXCEEDED: 1 workers did "
                           "not answer the shutdown within 10s(.|\n)*"));
}

// The same stop with Open MPI's daemon stopped too, as one hung in its own finalize after an
// abort was seen to be (server/abort_reaper.h): the gateway's MPI_Abort waits for the daemon for
// ever, so the reaper it started kills the gateway, then the daemon and the workers, and nothing
// is left behind.
TEST(WorkerHealTest, AnAbortWhoseDaemonNeverAnswersIsEndedByTheReaper) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  const std::vector<pid_t> workers = testing::DescendantsNamed(server.pid(), "mpigate-worker");
  const std::vector<pid_t> daemons = testing::DescendantsNamed(server.pid(), "orted");
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(daemons.size(), 1u);
  ASSERT_EQ(kill(workers[1], SIGSTOP), 0);
  ASSERT_EQ(kill(daemons[0], SIGSTOP), 0);
  const pid_t gateway = server.pid();

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_NE(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text,
              MatchesRegex(absl::StrCat("(.|\n)*aborting the workers(.|\n)*still there after the "
                                        "abort, killed: the gateway, pid ",
                                        gateway, "; .*", daemons[0], "(.|\n)*")));
}

}  // namespace
}  // namespace mpigate
