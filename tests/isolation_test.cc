// End-to-end tests of crash isolation: a real mpigate-server with 2 workers whose task code runs in
// task runner processes (the default, --isolation=process), and one with --isolation=none. A
// function that crashes its process fails only its own task, with ABORTED and how it died, and the
// pool serves on; an endless loop is killed by its run timeout or a forced cancel; no runner
// outlives the server.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/process_info.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A wait for an outcome that must come, long enough never to be the reason a test fails, and
// short enough that a missing one fails the test instead of hanging it.
constexpr absl::Duration kPatience = absl::Seconds(60);

std::vector<std::string> PoolFlags(std::vector<std::string> extra = {}) {
  std::vector<std::string> flags = {
      absl::StrCat("--task-lib=", testing::RunfilePath("tests/testdata/libsample_tasks.so")),
      // Tasks left spinning by a failed test must not hold up the server's stop for long.
      "--drain-grace=2s"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

std::unique_ptr<v1::Gateway::Stub> StubFor(const std::string& target) {
  return v1::Gateway::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

// Runs one task through the unary Run rpc, with a run timeout if `run_timeout_ms` is set.
v1::TaskOutcome RunOnce(const std::string& target, const std::string& function,
                        const std::string& payload, uint64_t run_timeout_ms = 0) {
  std::unique_ptr<v1::Gateway::Stub> stub = StubFor(target);
  v1::RunRequest request;
  request.mutable_task()->set_task_id(1);
  request.mutable_task()->set_function(function);
  request.mutable_task()->set_payload(payload);
  request.mutable_task()->mutable_options()->set_run_timeout_ms(run_timeout_ms);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
  v1::TaskOutcome outcome;
  const grpc::Status status = stub->Run(&context, request, &outcome);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return outcome;
}

class IsolationTest : public testing::SharedServerTest<IsolationTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 2, .flags = PoolFlags()};
  }
  static constexpr char kClientName[] = "isolation_test";

 protected:
  static void ExpectEveryWorkerRunsTasksInARunner(Executor& executor) {
    absl::StatusOr<std::vector<absl::StatusOr<std::string>>> processes =
        executor.Broadcast("sample.process", "").Results();
    ASSERT_TRUE(processes.ok()) << processes.status();
    ASSERT_EQ(processes->size(), 2u);
    for (const absl::StatusOr<std::string>& process : *processes) {
      EXPECT_EQ(process.value_or(process.status().ToString()), "mpigate-runner");
    }
  }
};

TEST_F(IsolationTest, TasksRunInTaskRunners) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  ExpectEveryWorkerRunsTasksInARunner(*executor);
}

TEST_F(IsolationTest, EachCrashFailsOnlyItsTaskAndThePoolServesOn) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const std::pair<std::string, std::string> crashes[] = {
      {"segv", "was killed by signal 11 (SIGSEGV, Segmentation fault)"},
      {"abort", "was killed by signal 6 (SIGABRT, Aborted)"},
      {"exit:3", "exited with status 3"},
      {"sigkill",
       "was killed by signal 9 (SIGKILL, Killed; the kernel's OOM killer sends this too)"},
  };
  for (const auto& [how, described] : crashes) {
    SCOPED_TRACE(how);
    absl::StatusOr<std::string> crashed = executor->Submit("sample.crash", how).Result(kPatience);
    EXPECT_EQ(crashed.status().code(), absl::StatusCode::kAborted) << crashed.status();
    EXPECT_THAT(crashed.status().message(), HasSubstr("task runner (pid "));
    EXPECT_THAT(crashed.status().message(), HasSubstr(described));

    // Both workers answer again, each from a fresh runner where one died.
    absl::StatusOr<std::vector<absl::StatusOr<std::string>>> whoami =
        executor->Broadcast("sample.whoami", "").Results();
    ASSERT_TRUE(whoami.ok()) << whoami.status();
    ASSERT_EQ(whoami->size(), 2u);
    EXPECT_EQ((*whoami)[0].value_or(""), "0");
    EXPECT_EQ((*whoami)[1].value_or(""), "1");
  }
  std::vector<Future> echoes;
  for (int i = 0; i < 100; ++i) echoes.push_back(executor->Submit("echo", absl::StrCat(i)));
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(echoes[i].Result(kPatience).value_or(""), absl::StrCat(i));
}

TEST_F(IsolationTest, TasksInFlightFromAnotherSessionSurviveACrash) {
  std::unique_ptr<Executor> flood = Connect("flood");
  std::unique_ptr<Executor> crasher = Connect("crasher");
  ASSERT_NE(flood, nullptr);
  ASSERT_NE(crasher, nullptr);
  constexpr int kTasks = 2000;
  std::vector<Future> futures;
  for (int i = 0; i < kTasks; ++i) futures.push_back(flood->Submit("echo", absl::StrCat(i)));
  // Fair share starts these among the flood's tasks, not after them.
  std::vector<Future> crashes;
  for (const char* how : {"segv", "abort", "sigkill"}) {
    crashes.push_back(crasher->Submit("sample.crash", how));
  }
  for (const Future& crash : crashes) {
    EXPECT_EQ(crash.Result(kPatience).status().code(), absl::StatusCode::kAborted);
  }
  int succeeded = 0;
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<std::string> result = futures[i].Result(kPatience);
    EXPECT_TRUE(result.ok()) << i << ": " << result.status();
    succeeded += result.ok() && *result == absl::StrCat(i);
  }
  EXPECT_EQ(succeeded, kTasks);
}

TEST_F(IsolationTest, ARunnerKilledWhileIdleIsReplacedBeforeTheNextTask) {
  const std::vector<pid_t> runners =
      testing::DescendantsNamed(server_->pool_root(), "mpigate-runner");
  ASSERT_EQ(runners.size(), 2u);
  // The OOM killer's way, between tasks; then wait until the runner has gone.
  const int pid_fd = static_cast<int>(syscall(SYS_pidfd_open, runners[0], 0));
  ASSERT_GE(pid_fd, 0);
  ASSERT_EQ(kill(runners[0], SIGKILL), 0);
  pollfd exited = {pid_fd, POLLIN, 0};
  ASSERT_EQ(poll(&exited, 1, -1), 1);
  close(pid_fd);

  // No task of the next ones is blamed for the death: each worker answers from a runner.
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  ExpectEveryWorkerRunsTasksInARunner(*executor);
}

// Needs the gateway to pass TaskOptions.run_timeout_ms on in TaskFrame.run_timeout_ms.
TEST_F(IsolationTest, RunTimeoutKillsAnEndlessLoop) {
  const absl::Time start = absl::Now();
  const v1::TaskOutcome outcome = RunOnce(server_->target(), "sample.crash", "spin", 300);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(outcome.error().message(), "task ran past its run timeout of 300 ms and was killed");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  // The worker serves on with a fresh runner.
  EXPECT_EQ(RunOnce(server_->target(), "echo", "after").result(), "after");
}

// Needs the gateway to pass CancelTasks.force on in CancelFrame.force.
TEST_F(IsolationTest, AForcedCancelKillsAnEndlessLoop) {
  std::unique_ptr<v1::Gateway::Stub> stub = StubFor(server_->target());
  testing::RawSession session(*stub, kPatience);
  session.Submit(1, "sample.crash", "spin");
  // Its progress report: it runs in the runner (not merely handed to the worker).
  ASSERT_TRUE(session.AwaitProgress(1).has_value());
  v1::SessionRequest cancel;
  cancel.mutable_cancel()->add_task_ids(1);
  cancel.mutable_cancel()->set_force(true);
  session.Send(cancel);
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_TRUE(reply.has_cancel_results()) << reply.DebugString();
  ASSERT_EQ(reply.cancel_results().results_size(), 1);
  EXPECT_TRUE(reply.cancel_results().results(0).interrupted());

  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  const grpc::Status end = session.ReadToEnd();
  ASSERT_TRUE(end.ok()) << end.error_message();
  const v1::TaskOutcome& outcome = session.outcomes().at(1);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(outcome.error().message(), HasSubstr("task was killed by a forced cancel"));
  EXPECT_EQ(RunOnce(server_->target(), "echo", "after").result(), "after");
}

TEST(IsolationLifecycleTest, NoRunnerOutlivesTheServer) {
  testing::ServerProcess server;
  ASSERT_EQ(server.Start({.workers = 2, .flags = PoolFlags()}), absl::OkStatus());
  // One runner dies and is replaced, so both the first runners and a replacement are checked.
  EXPECT_EQ(RunOnce(server.target(), "sample.crash", "segv").error().code(),
            grpc::StatusCode::ABORTED);
  EXPECT_EQ(RunOnce(server.target(), "echo", "x").result(), "x");
  const std::vector<pid_t> runners =
      testing::DescendantsNamed(server.pool_root(), "mpigate-runner");
  EXPECT_EQ(runners.size(), 2u);

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  // The loss is an event of the service's log, with how the process died.
  const std::string& log = exit->stderr_text;
  const size_t lost = log.find(" lost the process running task 1 of session ");
  ASSERT_NE(lost, std::string::npos) << log;
  const size_t line_start = log.rfind('\n', lost) + 1;  // 0 when it is the first line.
  EXPECT_THAT(log.substr(line_start, log.find('\n', lost) - line_start),
              ::testing::MatchesRegex(".* WARNING mpigate-server: worker [01] lost the process "
                                      "running task 1 of session [0-9]+ \\(attempt 1\\): "
                                      ".*SIGSEGV.*"));
  for (const pid_t runner : runners) {
    EXPECT_TRUE(kill(runner, 0) != 0 && errno == ESRCH) << "runner " << runner << " is left";
  }
}

TEST(IsolationLifecycleTest, InProcessModeRunsTasksInTheWorker) {
  testing::ServerProcess server;
  ASSERT_EQ(server.Start({.workers = 2, .flags = PoolFlags({"--isolation=none"})}),
            absl::OkStatus());
  EXPECT_EQ(RunOnce(server.target(), "sample.process", "").result(), server.worker_process_name());
  EXPECT_EQ(RunOnce(server.target(), "sample.greet", "you").result(), "hello, you from worker 0");
  EXPECT_THAT(testing::DescendantsNamed(server.pool_root(), "mpigate-runner"),
              ::testing::IsEmpty());
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// Needs the gateway to pass TaskOptions.run_timeout_ms on in TaskFrame.run_timeout_ms.
TEST(IsolationLifecycleTest, InProcessARunTimeoutInterruptsTheFunction) {
  testing::ServerProcess server;
  ASSERT_EQ(server.Start({.workers = 2, .flags = PoolFlags({"--isolation=none"})}),
            absl::OkStatus());
  const v1::TaskOutcome outcome = RunOnce(server.target(), "sleep", "600000", 200);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(outcome.error().message(),
            "task ran past its run timeout of 200 ms and was interrupted");
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

}  // namespace
}  // namespace mpigate
