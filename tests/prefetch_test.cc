// End-to-end tests of prefetch (Scheduler's "Prefetch"): a real mpigate-server whose one worker,
// once it has seen that its tasks are short, is handed several at a time and keeps the rest in its
// backlog (or its task runner's queue) while one runs. A task waiting there can be interrupted,
// and is then dropped without running; the task ahead of it is not disturbed. A crash fails only
// its own task.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
  session.Submit(21, "sleep", "1500");
  session.Submit(22, "echo", "behind");
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

  v1::SessionRequest batch;
  v1::TaskSpec& crash = *batch.mutable_submit()->add_tasks();
  crash.set_task_id(21);
  crash.set_function("sample.crash");
  crash.set_payload("segv");
  for (uint64_t id = 22; id <= 24; ++id) {
    v1::TaskSpec& echo = *batch.mutable_submit()->add_tasks();
    echo.set_task_id(id);
    echo.set_function("echo");
    echo.set_payload(absl::StrCat("after ", id));
  }
  session.Send(batch);
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

  session.Submit(21, "sample.crash", "spin");
  session.Submit(22, "echo", "behind");
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
