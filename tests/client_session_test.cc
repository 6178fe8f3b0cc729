// The C++ client's Session (client/internal/session.h) against a fake gateway the test drives
// (tests/fake_gateway.h): outcomes of each kind, acknowledgements in one message, cancel answers,
// resuming after a dropped stream or a write that fails mid-way, and the service ending the
// stream (with `closed`, without it, or with an error that is not worth resuming). No server: every
// event arrives when the test sends it.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/internal/session.h"
#include "tests/fake_gateway.h"

namespace mpigate::internal {
namespace {

using ::mpigate::testing::FakeGateway;
using ::mpigate::testing::Opened;

constexpr absl::Duration kPatience = absl::Seconds(30);
constexpr char kToken[] = "resume-secret";

// The ids of every task the `submit` requests so far carry, in order.
std::vector<uint64_t> SubmittedIds(const std::vector<v1::SessionRequest>& submits) {
  std::vector<uint64_t> ids;
  for (const v1::SessionRequest& submit : submits) {
    for (const v1::TaskSpec& spec : submit.submit().tasks()) ids.push_back(spec.task_id());
  }
  return ids;
}

// The future's result once done, or its error as text.
std::string Value(const Future& future) {
  absl::StatusOr<std::string> result = future.Result(kPatience);
  return result.ok() ? *result : result.status().ToString();
}

v1::TaskOutcome Succeeded(uint64_t task_id, const std::string& result) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(task_id);
  outcome.set_state(v1::TASK_STATE_SUCCEEDED);
  outcome.set_result(result);
  return outcome;
}

v1::SessionEvent Updates(std::vector<v1::TaskOutcome> outcomes) {
  v1::SessionEvent event;
  for (v1::TaskOutcome& outcome : outcomes) {
    *event.mutable_updates()->add_outcomes() = std::move(outcome);
  }
  return event;
}

// A resumable session: the first `open` gets a resume token, a resuming one `resumed` with
// `last_task_id` (what the service has), or `resume_error` if set.
class ResumableService {
 public:
  uint64_t last_task_id = 0;
  absl::Status resume_error;

  FakeGateway::OnOpen OnOpen() {
    return [this](const v1::OpenSession& open) -> FakeGateway::OnOpenResult {
      v1::SessionEvent opened = Opened(kToken, /*resume_grace_ms=*/60000);
      if (open.resume_token().empty()) return opened;
      if (!resume_error.ok()) return resume_error;
      opened.mutable_opened()->set_resumed(true);
      opened.mutable_opened()->set_last_task_id(last_task_id);
      return opened;
    };
  }
};

class ClientSessionTest : public ::testing::Test {
 protected:
  // Opens a session on a new fake gateway (answering `open` with `on_open`), kept in fake_.
  void Open(FakeGateway::OnOpen on_open = nullptr) {
    auto gateway = std::make_unique<FakeGateway>(std::move(on_open));
    fake_ = gateway.get();
    ExecutorOptions options;
    options.client_name = "client_session_test";
    absl::StatusOr<std::shared_ptr<Session>> session = Session::Open(options, std::move(gateway));
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = *std::move(session);
  }

  // The service ends the current stream, which ends the session unless it is resumed, and the
  // owner closes it.
  void TearDown() override {
    if (session_ == nullptr) return;
    fake_->End(absl::OkStatus());
    session_->Close();
  }

  Future Submit(const std::string& payload = "x") {
    return session_->Submit("echo", payload, SubmitOptions());
  }

  std::shared_ptr<Session> session_;
  FakeGateway* fake_ = nullptr;
};

TEST_F(ClientSessionTest, OutcomesOfEachKindCompleteTheirFutures) {
  Open();
  std::vector<Future> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(Submit());
  std::vector<uint64_t> ids;
  for (const Future& future : futures) ids.push_back(future.task_id());
  fake_->AwaitTasks(5);

  v1::TaskOutcome failed;
  failed.set_task_id(ids[1]);
  failed.set_state(v1::TASK_STATE_FAILED);
  failed.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  failed.mutable_error()->set_message("bad input");
  failed.mutable_error()->set_exception_type("ValueError");
  v1::TaskOutcome cancelled;
  cancelled.set_task_id(ids[2]);
  cancelled.set_state(v1::TASK_STATE_CANCELLED);
  cancelled.mutable_error()->set_message("cancelled by the client");
  v1::TaskOutcome no_state;
  no_state.set_task_id(ids[3]);
  v1::SessionEvent started;
  started.mutable_updates()->add_started(ids[0]);
  fake_->Send(started);
  fake_->Send(Updates({Succeeded(ids[0], "result"), failed, cancelled, no_state}));
  v1::SessionEvent rejected;
  v1::TaskRejection* rejection = rejected.mutable_rejected()->add_rejections();
  rejection->set_task_id(ids[4]);
  rejection->set_code(static_cast<int>(absl::StatusCode::kNotFound));
  rejection->set_message("no function 'echo'");
  fake_->Send(rejected);

  EXPECT_EQ(Value(futures[0]), "result");
  EXPECT_EQ(futures[1].Result(kPatience).status(),
            absl::InvalidArgumentError("ValueError: bad input"));
  EXPECT_EQ(futures[2].Result(kPatience).status(), absl::CancelledError("cancelled by the client"));
  EXPECT_TRUE(futures[2].Cancelled());
  EXPECT_EQ(futures[3].Result(kPatience).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(futures[4].Result(kPatience).status(), absl::NotFoundError("no function 'echo'"));
}

// A submit while nothing else is in flight is written by its caller, before Submit() returns:
// a round trip waits for no other thread. One while another task is in flight is the writer
// thread's, which catches up with a burst in few messages.
TEST_F(ClientSessionTest, ALoneSubmitIsWrittenByItsCallerAndOneInABurstByTheWriterThread) {
  Open();
  Future alone = Submit("alone");
  ASSERT_EQ(fake_->Requests(v1::SessionRequest::kSubmit).size(), 1u);
  EXPECT_EQ(fake_->WritingThreads(v1::SessionRequest::kSubmit)[0], std::this_thread::get_id());

  Future second = Submit("second");
  ASSERT_EQ(fake_->AwaitTasks(2).size(), 2u);
  EXPECT_NE(fake_->WritingThreads(v1::SessionRequest::kSubmit)[1], std::this_thread::get_id());
}

// One too large to fit HTTP/2's first flow-control window could wait for the service to read: the
// writer thread writes it, and Submit() returns at once.
TEST_F(ClientSessionTest, ALoneLargeSubmitIsWrittenByTheWriterThread) {
  Open();
  Future large = Submit(std::string(64 << 10, 'x'));
  ASSERT_EQ(fake_->AwaitTasks(1).size(), 1u);
  EXPECT_NE(fake_->WritingThreads(v1::SessionRequest::kSubmit)[0], std::this_thread::get_id());
}

TEST_F(ClientSessionTest, AnUpdateThatEndsATaskStillDeliversItsLastProgress) {
  Open();
  Future future = Submit();
  fake_->AwaitTasks(1);
  std::vector<std::string> seen;
  future.AddProgressCallback([&seen](const Future& running, const TaskProgress& progress) {
    // A task that reports progress has started, whether or not its start was delivered.
    seen.push_back(absl::StrCat(running.Running() ? "running " : "not running ", progress.fraction,
                                " ", progress.message));
  });
  // Its start, last progress and outcome in one update: the start is skipped (the task ends
  // here), the progress is not.
  v1::SessionEvent event = Updates({Succeeded(future.task_id(), "done")});
  event.mutable_updates()->add_started(future.task_id());
  v1::TaskProgress* progress = event.mutable_updates()->add_progress();
  progress->set_task_id(future.task_id());
  progress->set_fraction(0.5);
  progress->set_message("half");
  fake_->Send(event);
  EXPECT_EQ(Value(future), "done");
  EXPECT_EQ(seen, std::vector<std::string>{"running 0.5 half"});
  ASSERT_TRUE(future.progress().has_value());
  EXPECT_EQ(future.progress()->message, "half") << "the last report stays";
}

TEST_F(ClientSessionTest, OutcomesHandledTogetherAreAcknowledgedInOneMessage) {
  Open();
  Future first = Submit();
  Future second = Submit();
  fake_->AwaitTasks(2);
  // The third outcome finds no future (sent again after a resume, say): acknowledged all the same.
  fake_->Send(Updates({Succeeded(first.task_id(), "1"), Succeeded(second.task_id(), "2"),
                       Succeeded(999, "again")}));
  std::vector<v1::SessionRequest> acks = fake_->AwaitRequests(v1::SessionRequest::kAck, 1);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(std::vector<uint64_t>(acks[0].ack().task_ids().begin(), acks[0].ack().task_ids().end()),
            (std::vector<uint64_t>{first.task_id(), second.task_id(), 999}));
  EXPECT_EQ(Value(first), "1");
  EXPECT_EQ(Value(second), "2");
}

TEST_F(ClientSessionTest, CancelWaitsForTheAnswerAndReportsWhatWasInterrupted) {
  Open();
  Future queued = Submit();
  Future running = Submit();
  fake_->AwaitTasks(2);
  size_t interrupted = 0;
  std::thread canceller([&] {
    interrupted = session_->Cancel({queued.task_id(), running.task_id()}, /*wait=*/true,
                                   CancelMode::kInterrupt);
  });
  std::vector<v1::SessionRequest> cancels = fake_->AwaitRequests(v1::SessionRequest::kCancel, 1);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_TRUE(cancels[0].cancel().interrupt_running());
  EXPECT_FALSE(cancels[0].cancel().force());
  v1::SessionEvent answer;
  v1::CancelResult* result = answer.mutable_cancel_results()->add_results();
  result->set_task_id(queued.task_id());
  result->set_cancelled(true);
  result = answer.mutable_cancel_results()->add_results();
  result->set_task_id(running.task_id());
  result->set_interrupted(true);
  fake_->Send(answer);
  canceller.join();
  EXPECT_EQ(interrupted, 1u);
  EXPECT_TRUE(queued.Cancelled());
  EXPECT_FALSE(running.Done());
}

TEST_F(ClientSessionTest, ADroppedStreamIsResumedAndGetsAgainWhatTheServiceLacks) {
  ResumableService service;
  Open(service.OnOpen());
  Future had = Submit("had");
  Future lost = Submit("lost");
  ASSERT_EQ(SubmittedIds(fake_->AwaitTasks(2)),
            (std::vector<uint64_t>{had.task_id(), lost.task_id()}));
  fake_->Send(Updates({Succeeded(had.task_id(), "done")}));
  ASSERT_EQ(Value(had), "done");

  fake_->AwaitRequests(v1::SessionRequest::kAck, 1);

  // The connection drops; the service had only the first spec.
  service.last_task_id = had.task_id();
  fake_->Break(absl::UnavailableError("connection reset"));
  std::vector<v1::SessionRequest> opens = fake_->AwaitRequests(v1::SessionRequest::kOpen, 2);
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[1].open().resume_token(), kToken);

  // Only the spec the service lacks goes again, on the new stream.
  std::vector<v1::SessionRequest> submits = fake_->AwaitTasks(3);
  EXPECT_EQ(SubmittedIds(submits),
            (std::vector<uint64_t>{had.task_id(), lost.task_id(), lost.task_id()}));
  EXPECT_EQ(submits.back().submit().tasks(0).payload(), "lost");
  fake_->Send(Updates({Succeeded(lost.task_id(), "found")}));
  EXPECT_EQ(Value(lost), "found");
  EXPECT_EQ(fake_->calls(), 2u);
}

TEST_F(ClientSessionTest, AStreamThatFailsWhileTheClientWritesIsResumed) {
  ResumableService service;
  Open(service.OnOpen());
  fake_->BreakOnNextWrite();
  Future future = Submit("payload");
  std::vector<v1::SessionRequest> submits = fake_->AwaitTasks(1);
  ASSERT_EQ(submits.size(), 1u);
  EXPECT_EQ(fake_->calls(), 2u) << "the spec arrives on the resumed stream";
  EXPECT_EQ(submits[0].submit().tasks(0).task_id(), future.task_id());
  fake_->Send(Updates({Succeeded(future.task_id(), "ok")}));
  EXPECT_EQ(Value(future), "ok");
}

TEST_F(ClientSessionTest, ASessionThatCannotBeResumedFailsItsFutures) {
  ResumableService service;
  service.resume_error = absl::NotFoundError("no such session");
  Open(service.OnOpen());
  Future future = Submit();
  fake_->AwaitTasks(1);
  fake_->Break(absl::UnavailableError("connection reset"));
  absl::Status status = future.Result(kPatience).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("could not be resumed"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("no such session"), absl::string_view::npos) << status;
}

TEST_F(ClientSessionTest, AServiceThatEndsTheStreamEndsTheSessionWithoutResuming) {
  ResumableService service;
  Open(service.OnOpen());
  Future future = Submit();
  fake_->AwaitTasks(1);
  // The service half-closes: its side ends with OK, without `closed`.
  fake_->End(absl::OkStatus());
  absl::Status status = future.Result(kPatience).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("the service ended the session"), absl::string_view::npos)
      << status;
  EXPECT_EQ(fake_->calls(), 1u);
  EXPECT_EQ(Submit().Result(kPatience).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientSessionTest, AnErrorAboutTheRequestIsNotResumed) {
  ResumableService service;
  Open(service.OnOpen());
  Future future = Submit();
  fake_->AwaitTasks(1);
  fake_->Break(absl::InvalidArgumentError("malformed request"));
  absl::Status status = future.Result(kPatience).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("malformed request"), absl::string_view::npos) << status;
  EXPECT_EQ(fake_->calls(), 1u);
}

TEST_F(ClientSessionTest, AfterClosedTheSessionEndsCleanly) {
  Open();
  Future future = Submit();
  fake_->AwaitTasks(1);
  session_->Shutdown(/*wait=*/false, /*cancel_futures=*/false);
  EXPECT_EQ(Submit().Result(kPatience).status().code(), absl::StatusCode::kFailedPrecondition);
  fake_->AwaitRequests(v1::SessionRequest::kShutdown, 1);
  v1::SessionEvent closed;
  closed.mutable_closed();
  fake_->Send(Updates({Succeeded(future.task_id(), "last")}));
  fake_->Send(closed);
  fake_->End(absl::OkStatus());
  session_->Shutdown(/*wait=*/true, /*cancel_futures=*/false);
  EXPECT_EQ(Value(future), "last");
  EXPECT_EQ(fake_->calls(), 1u);
}

}  // namespace
}  // namespace mpigate::internal
