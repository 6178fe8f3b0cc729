// Losing a worker process (issue 24), end to end: a real mpigate-server with 2 MPI workers that
// load the test task library, whose worker processes are killed from outside (SIGKILL, as the
// kernel's OOM killer does) or crash or exit through task code. After each loss every task ends
// exactly once (with its result, after a retry, or ABORTED saying the worker was lost), the pool
// is whole again (PoolStatus, and a gang of both workers runs), and SIGTERM stops the service
// with exit status 0 and no process left behind (ServerProcess::Stop waits for every descendant).
//
// Each test has a server of its own, since each breaks its pool. Tasks that must be running when a
// worker is killed are `sleep`s long enough to outlast the kill, waited for until they run.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.pb.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Outlasts the kill that comes once it runs; short enough that the tasks that survive end soon.
constexpr char kSleepMs[] = "3000";
// Far longer than any of these waits takes when the service works.
constexpr absl::Duration kPatience = absl::Minutes(2);

class WorkerLossTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags = {}) {
    flags.push_back(
        absl::StrCat("--task-lib=", testing::RunfilePath("tests/testdata/libsample_tasks.so")));
    const absl::Status started = server_.Start({.workers = 2, .flags = std::move(flags)});
    ASSERT_TRUE(started.ok()) << started;
  }

  std::unique_ptr<Executor> Connect(const std::string& name) {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server_.target(), .client_name = name});
    EXPECT_TRUE(executor.ok()) << executor.status();
    return executor.ok() ? *std::move(executor) : nullptr;
  }

  // The pool's worker processes as they are now.
  std::vector<pid_t> WorkerPids() const {
    return testing::DescendantsNamed(server_.pid(), "mpigate-worker");
  }

  // Waits until the pool says it is whole (no worker out of service, no reason to be degraded),
  // then runs a gang of both workers, which needs both in service and in one MPI job.
  void ExpectWholeAgain(Executor& executor) {
    const absl::Status whole = testing::AwaitPoolStatus(
        server_.target(), [](const v1::PoolStatus& status) {
          return status.workers() == 2 && status.workers_down() == 0 &&
                 status.degraded_reason().empty() && status.busy_workers() == 0;
        });
    ASSERT_TRUE(whole.ok()) << whole;
    SubmitOptions gang;
    gang.gang_size = 2;
    const absl::StatusOr<std::string> info =
        executor.Submit("sample.gang_info", "", gang).Result(kPatience);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(*info, "gang_size=2 workers=0,1");
  }

  // SIGTERM: the service drains and exits 0, and every process it started ends (Stop waits for
  // each).
  void ExpectCleanStop() {
    absl::StatusOr<testing::ServerExit> exit = server_.Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
    stderr_text_ = exit->stderr_text;
  }

  testing::ServerProcess server_;
  std::string stderr_text_;
};

// A task that ran on the lost worker ended ABORTED saying so, or (with retries) ran again.
void ExpectLostOrRetried(const Future& future, uint32_t max_retries) {
  const absl::StatusOr<std::string> result = future.Result(kPatience);
  if (max_retries == 0) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
    EXPECT_THAT(std::string(result.status().message()),
                MatchesRegex("worker [01] on .* \\(pid [0-9]+\\) was lost: .*"));
  } else {
    EXPECT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(future.attempts(), 2u);
  }
}

TEST_F(WorkerLossTest, OneWorkerKilledWhileTwoSessionsRunTheirTasks) {
  StartServer();
  std::unique_ptr<Executor> first = Connect("first");
  std::unique_ptr<Executor> second = Connect("second");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  // One long task per session, one on each worker, then quick ones queued behind them.
  SubmitOptions retried;
  retried.max_retries = 1;
  Future once = first->Submit("sleep", kSleepMs);
  Future twice = second->Submit("sleep", kSleepMs, retried);
  ASSERT_TRUE(once.WaitStarted(kPatience));
  ASSERT_TRUE(twice.WaitStarted(kPatience));
  std::vector<Future> queued;
  for (int i = 0; i < 6; ++i) {
    queued.push_back((i % 2 == 0 ? first : second)->Submit("echo", absl::StrCat("queued ", i)));
  }
  const std::vector<pid_t> workers = WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);

  // Whichever task ran on it: without retries it failed saying the worker was lost, with one it
  // ran again; the other ran to its end.
  ASSERT_TRUE(once.Wait(kPatience));
  ASSERT_TRUE(twice.Wait(kPatience));
  const bool once_lost = !once.Result().ok();
  const bool twice_rerun = twice.attempts() == 2;
  EXPECT_NE(once_lost, twice_rerun) << "exactly one of them ran on the killed worker";
  if (once_lost) ExpectLostOrRetried(once, 0);
  if (twice_rerun) ExpectLostOrRetried(twice, 1);
  EXPECT_TRUE(twice.Result().ok()) << twice.Result().status();
  for (int i = 0; i < 6; ++i) {
    const absl::StatusOr<std::string> result = queued[i].Result(kPatience);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, absl::StrCat("queued ", i));
  }
  ExpectWholeAgain(*first);
  for (const pid_t pid : WorkerPids()) EXPECT_NE(pid, workers[0]);
  ExpectCleanStop();
  EXPECT_THAT(stderr_text_,
              MatchesRegex("(.|\n)*WARNING.*worker [01] on .* \\(pid [0-9]+\\) was lost: (.|\n)*"));
}

TEST_F(WorkerLossTest, EveryWorkerKilledAtOnce) {
  StartServer();
  std::unique_ptr<Executor> executor = Connect("every");
  ASSERT_NE(executor, nullptr);
  SubmitOptions retried;
  retried.max_retries = 2;
  std::vector<Future> plain;
  std::vector<Future> with_retries;
  plain.push_back(executor->Submit("sleep", kSleepMs));
  with_retries.push_back(executor->Submit("sleep", kSleepMs, retried));
  for (const Future& future : plain) ASSERT_TRUE(future.WaitStarted(kPatience));
  for (const Future& future : with_retries) ASSERT_TRUE(future.WaitStarted(kPatience));
  for (int i = 0; i < 4; ++i) with_retries.push_back(executor->Submit("echo", "after", retried));
  for (const pid_t pid : WorkerPids()) ASSERT_EQ(kill(pid, SIGKILL), 0);

  for (const Future& future : plain) ExpectLostOrRetried(future, 0);
  ExpectLostOrRetried(with_retries[0], 2);
  for (size_t i = 1; i < with_retries.size(); ++i) {
    EXPECT_TRUE(with_retries[i].Result(kPatience).ok()) << with_retries[i].Result().status();
  }
  ExpectWholeAgain(*executor);
  ExpectCleanStop();
}

TEST_F(WorkerLossTest, AWorkerKilledInTheMiddleOfAGang) {
  StartServer();
  std::unique_ptr<Executor> executor = Connect("gang");
  ASSERT_NE(executor, nullptr);
  SubmitOptions gang;
  gang.gang_size = 2;
  Future waiting = executor->Submit("sample.gang_wait", "", gang);
  // Rank 0 reports progress over and over once the gang has made its communicator.
  absl::Notification reported;
  waiting.AddProgressCallback([&reported](const Future&, const TaskProgress&) {
    if (!reported.HasBeenNotified()) reported.Notify();
  });
  ASSERT_TRUE(reported.WaitForNotificationWithTimeout(kPatience));
  const std::vector<pid_t> workers = WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[1], SIGKILL), 0);

  const absl::Status failed = waiting.Exception(kPatience);
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted) << failed;
  EXPECT_THAT(std::string(failed.message()), AllOf(MatchesRegex("gang rank [01] \\(worker [01]\\): .*"),
                                      HasSubstr("was lost")));
  ExpectWholeAgain(*executor);
  ExpectCleanStop();
}

TEST_F(WorkerLossTest, AGangFunctionThatCrashesItsWorker) {
  StartServer();
  std::unique_ptr<Executor> executor = Connect("gang crash");
  ASSERT_NE(executor, nullptr);
  SubmitOptions gang;
  gang.gang_size = 2;
  // Rank 1 aborts; rank 0 waits for it in a barrier that never ends, until it is released.
  const absl::Status failed = executor->Submit("sample.gang_crash", "1", gang).Exception(kPatience);
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted) << failed;
  EXPECT_THAT(std::string(failed.message()),
              AllOf(HasSubstr("gang rank 1 (worker 1)"), HasSubstr("was lost"),
                    HasSubstr("killed by signal 6 (SIGABRT)")));
  ExpectWholeAgain(*executor);
  ExpectCleanStop();
}

TEST_F(WorkerLossTest, ExitFromAnInProcessFunction) {
  StartServer({"--isolation=none"});
  std::unique_ptr<Executor> executor = Connect("exit");
  ASSERT_NE(executor, nullptr);
  // The other worker runs on meanwhile: Open MPI does not take it down with the one that exits.
  Future survivor = executor->Submit("sleep", kSleepMs);
  ASSERT_TRUE(survivor.WaitStarted(kPatience));
  const absl::Status failed = executor->Submit("sample.crash", "exit:0").Exception(kPatience);
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted) << failed;
  EXPECT_THAT(std::string(failed.message()),
              AllOf(HasSubstr("was lost"), HasSubstr("exited with status 0 from task code")));
  EXPECT_TRUE(survivor.Result(kPatience).ok()) << survivor.Result().status();
  EXPECT_EQ(survivor.attempts(), 1u);
  ExpectWholeAgain(*executor);
  ExpectCleanStop();
}

// World mode, started with the parameters that let an MPI job outlive one of its processes
// (docs/worker-loss.md): the pool serves on with the worker it has left, says it is degraded,
// and when that one is lost too the service ends itself, saying why. (The gateway exits 1, but
// under these parameters mpiexec exits 0 whatever its ranks do.)
TEST(WorldWorkerLossTest, ServesOnWithTheSurvivorThenEndsLoudly) {
  // mpiexec reads these from its environment, as it would --mca flags.
  setenv("OMPI_MCA_orte_abort_on_non_zero_status", "0", 1);
  setenv("OMPI_MCA_orte_enable_recovery", "1", 1);
  testing::ServerProcess server;
  const absl::Status started = server.Start(
      {.workers = 2,
       .flags = {absl::StrCat("--task-lib=",
                              testing::RunfilePath("tests/testdata/libsample_tasks.so"))},
       .world = true});
  unsetenv("OMPI_MCA_orte_abort_on_non_zero_status");
  unsetenv("OMPI_MCA_orte_enable_recovery");
  ASSERT_TRUE(started.ok()) << started;
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "world"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  SubmitOptions retried;
  retried.max_retries = 1;
  Future first = (*executor)->Submit("sleep", kSleepMs, retried);
  Future second = (*executor)->Submit("sleep", kSleepMs, retried);
  ASSERT_TRUE(first.WaitStarted(kPatience));
  ASSERT_TRUE(second.WaitStarted(kPatience));
  // Ranks 1 and 2: the same program as the gateway, started by the same mpiexec.
  std::vector<pid_t> workers;
  for (const pid_t pid : testing::DescendantsNamed(getpid(), "mpigate-server")) {
    if (pid != server.pid()) workers.push_back(pid);
  }
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);
  // The task on it runs again on the other worker.
  EXPECT_TRUE(first.Result(kPatience).ok()) << first.Result().status();
  EXPECT_TRUE(second.Result(kPatience).ok()) << second.Result().status();
  EXPECT_EQ(first.attempts() + second.attempts(), 3u);
  const absl::Status degraded =
      testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
        return status.workers_down() == 1 &&
               absl::StrContains(status.degraded_reason(), "nothing can replace them");
      });
  EXPECT_TRUE(degraded.ok()) << degraded;
  EXPECT_TRUE((*executor)->Submit("echo", "still").Result(kPatience).ok());

  ASSERT_EQ(kill(workers[1], SIGKILL), 0);
  absl::StatusOr<testing::ServerExit> exit = server.Stop(/*signal_number=*/0);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_THAT(exit->stderr_text,
              HasSubstr("ERROR mpigate-server: UNAVAILABLE: every worker was lost"));
}

}  // namespace
}  // namespace mpigate
