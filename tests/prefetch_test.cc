// End-to-end tests of prefetch (Scheduler's "Prefetch"): a real mpigate-server whose one worker,
// once it has seen that its tasks are short, is handed several at a time and keeps the rest in its
// backlog (or its task runner's queue) while one runs. A task waiting there can be interrupted,
// and is then dropped without running; the task ahead of it is not disturbed. A crash fails only
// its own task. A long task after short ones holds back only what was handed over before it had
// run a while.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

constexpr absl::Duration kPatience = absl::Seconds(60);

struct TaskToSubmit {
  uint64_t id;
  std::string function;
  std::string payload;
};

// Submits `tasks` in one message, so that the scheduler takes them in one pass: one handed over
// behind a long task must get there before the long task has run a while (a worker whose task
// has run ten times the prefetch window is handed nothing more), however loaded the machine.
void SubmitTogether(testing::RawSession& session, const std::vector<TaskToSubmit>& tasks) {
  v1::SessionRequest batch;
  for (const TaskToSubmit& task : tasks) {
    v1::TaskSpec& spec = *batch.mutable_submit()->add_tasks();
    spec.set_task_id(task.id);
    spec.set_function(task.function);
    spec.set_payload(task.payload);
  }
  session.Send(batch);
}

class PrefetchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefetchTest, AnInterruptedTaskInTheBacklogIsDroppedAndTheOneAheadRunsOn) {
  testing::ServerProcess server;
  ASSERT_EQ(server.Start({.workers = 1,
                          .flags = {"--max_tasks_per_worker=8", "--drain-grace=2s",
                                    absl::StrCat("--isolation=", GetParam())}}),
            absl::OkStatus());
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(channel);
  testing::RawSession session(*stub, kPatience);
  // Short tasks first, so that the worker may hold several.
  for (uint64_t id = 1; id <= 20; ++id) session.Submit(id, "echo", "short");
  ASSERT_TRUE(session.AwaitOutcomes(20));

  // The sleep runs; the echo behind it is handed to the worker at once and waits in its backlog.
  SubmitTogether(session, {{21, "sleep", "1500"}, {22, "echo", "behind"}});
  ASSERT_TRUE(session.AwaitStarted(21));
  ASSERT_TRUE(session.AwaitStarted(22));
  v1::SessionRequest cancel;
  cancel.mutable_cancel()->add_task_ids(22);
  session.Send(cancel);
  const v1::SessionEvent plain = session.NextReply();
  ASSERT_TRUE(plain.has_cancel_results()) << plain.DebugString();
  EXPECT_FALSE(plain.cancel_results().results(0).cancelled()) << "handed over: running";
  cancel.mutable_cancel()->set_interrupt_running(true);
  session.Send(cancel);
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_TRUE(reply.has_cancel_results()) << reply.DebugString();
  EXPECT_TRUE(reply.cancel_results().results(0).interrupted());

  ASSERT_TRUE(session.AwaitOutcomes(21));
  const v1::TaskOutcome& dropped = session.outcomes().at(22);
  EXPECT_EQ(dropped.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(dropped.error().message(), "cancelled before it started, in the worker's backlog");
  EXPECT_EQ(session.outcomes().count(21), 0u) << "the sleep ended before the cancel of 22";

  ASSERT_TRUE(session.AwaitOutcomes(22));
  const v1::TaskOutcome& sleep = session.outcomes().at(21);
  EXPECT_EQ(sleep.state(), v1::TASK_STATE_SUCCEEDED) << sleep.DebugString();
  EXPECT_GE(sleep.run_us(), 1'500'000u);
}

INSTANTIATE_TEST_SUITE_P(Isolation, PrefetchTest, ::testing::Values("process", "none"));

// A long task after a run of short ones: once it has run well past the prefetch window, its worker
// is handed nothing more, so the short tasks that follow run on the other worker instead of
// waiting behind it.
TEST(PrefetchLongTaskTest, ShortTasksDoNotQueueBehindALongTaskThatHasRunAWhile) {
  testing::ServerProcess server;
  ASSERT_EQ(server.Start({.workers = 2}), absl::OkStatus());
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target()});
  ASSERT_TRUE(executor.ok()) << executor.status();
  // Both workers learn that their tasks are short.
  std::vector<Future> warm;
  for (int i = 0; i < 200; ++i) warm.push_back((*executor)->Submit("echo", "warm"));
  for (const Future& future : warm) ASSERT_TRUE(future.Result(kPatience).ok());

  // A sleep that only an interrupt ends, until it says it has slept 50 ms: ten times the 1 ms
  // window is 10 ms.
  constexpr double kSleepMs = 600000;
  Future sleeping = (*executor)->Submit("sleep", "600000");
  absl::Notification past_the_window;
  sleeping.AddProgressCallback([&past_the_window](const Future&, const TaskProgress& progress) {
    if (progress.fraction * kSleepMs >= 50 && !past_the_window.HasBeenNotified()) {
      past_the_window.Notify();
    }
  });
  ASSERT_TRUE(past_the_window.WaitForNotificationWithTimeout(kPatience));

  std::vector<Future> short_tasks;
  for (int i = 0; i < 20; ++i) {
    short_tasks.push_back((*executor)->Submit("echo", absl::StrCat("short ", i)));
  }
  // One deadline for all: a task stuck behind the sleep fails the test in a minute, not twenty.
  const absl::Time deadline = absl::Now() + kPatience;
  for (int i = 0; i < 20; ++i) {
    const absl::StatusOr<std::string> result = short_tasks[i].Result(deadline - absl::Now());
    EXPECT_EQ(result.value_or(result.status().ToString()), absl::StrCat("short ", i));
  }
  EXPECT_FALSE(sleeping.Done());
  EXPECT_TRUE(sleeping.Interrupt());
  EXPECT_EQ(sleeping.Exception(kPatience).code(), absl::StatusCode::kCancelled);
}

// One worker with the sample task library, whose first 20 short tasks have taught the scheduler
// to hand it several at a time, and a raw session of it.
class PrefetchRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(
        server_.Start(
            {.workers = 1,
             .flags = {"--max_tasks_per_worker=8", "--drain-grace=2s",
                       absl::StrCat("--task-lib=",
                                    testing::RunfilePath("tests/testdata/libsample_tasks.so"))}}),
        absl::OkStatus());
    stub_ = v1::Gateway::NewStub(
        grpc::CreateChannel(server_.target(), grpc::InsecureChannelCredentials()));
    session_ = std::make_unique<testing::RawSession>(*stub_, kPatience);
    for (uint64_t id = 1; id <= 20; ++id) session_->Submit(id, "echo", "short");
    ASSERT_TRUE(session_->AwaitOutcomes(20));
  }

  testing::ServerProcess server_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  std::unique_ptr<testing::RawSession> session_;
};

// The worker hands its runner every short task it holds at once. A crash fails only the task
// that crashed; those queued behind it in the dead runner never started, and run in the new one.
TEST_F(PrefetchRunnerTest, TasksQueuedBehindACrashRunInTheNextRunner) {
  testing::RawSession& session = *session_;

  std::vector<TaskToSubmit> tasks = {{21, "sample.crash", "segv"}};
  for (uint64_t id = 22; id <= 24; ++id) tasks.push_back({id, "echo", absl::StrCat("after ", id)});
  SubmitTogether(session, tasks);
  ASSERT_TRUE(session.AwaitOutcomes(24));
  const v1::TaskOutcome& crashed = session.outcomes().at(21);
  EXPECT_EQ(crashed.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(crashed.error().code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(crashed.error().message(), ::testing::HasSubstr("SIGSEGV"));
  for (uint64_t id = 22; id <= 24; ++id) {
    const v1::TaskOutcome& echo = session.outcomes().at(id);
    EXPECT_EQ(echo.state(), v1::TASK_STATE_SUCCEEDED) << echo.DebugString();
    EXPECT_EQ(echo.result(), absl::StrCat("after ", id));
    EXPECT_EQ(echo.attempts(), 1u);
  }
}

// A forced cancel that names the running task and one queued behind it in the runner: the first is
// killed, the second never runs, though the runner it was queued in is gone.
TEST_F(PrefetchRunnerTest,
       AForcedCancelOfTheRunningTaskAndOneQueuedBehindKillsOneAndDropsTheOther) {
  testing::RawSession& session = *session_;

  SubmitTogether(session, {{21, "sample.crash", "spin"}, {22, "echo", "behind"}});
  // The spin reports progress once it runs; the echo was handed over with it and waits.
  ASSERT_TRUE(session.AwaitProgress(21).has_value());
  ASSERT_TRUE(session.AwaitStarted(22));
  v1::SessionRequest cancel;
  cancel.mutable_cancel()->add_task_ids(21);
  cancel.mutable_cancel()->add_task_ids(22);
  cancel.mutable_cancel()->set_force(true);
  session.Send(cancel);
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_TRUE(reply.has_cancel_results()) << reply.DebugString();

  ASSERT_TRUE(session.AwaitOutcomes(22));
  const v1::TaskOutcome& killed = session.outcomes().at(21);
  EXPECT_EQ(killed.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_THAT(killed.error().message(), ::testing::HasSubstr("killed by a forced cancel"));
  const v1::TaskOutcome& dropped = session.outcomes().at(22);
  EXPECT_EQ(dropped.state(), v1::TASK_STATE_CANCELLED) << dropped.DebugString();
  EXPECT_EQ(dropped.error().message(), "cancelled before it started, in the worker's backlog");
}

}  // namespace
}  // namespace mpigate
