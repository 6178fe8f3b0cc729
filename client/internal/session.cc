#include "client/internal/session.h"

#include <grpc/support/time.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/endpoint.h"
#include "common/grpc_status.h"

namespace mpigate::internal {
namespace {

// A burst of submissions goes out in messages of about this much task data: large enough that
// per-message costs vanish at 100k small tasks/s, small enough that the first tasks of a big burst
// reach the workers without waiting for the whole burst to be encoded. A single larger task goes
// alone.
constexpr size_t kBatchBytes = 4 << 20;

// What a SessionRequest adds around its SubmitTasks, and a SubmitTasks around each TaskSpec: a tag
// and a length varint. Generous upper bounds; they only need to keep messages under the limit.
constexpr size_t kRequestOverhead = 16;
constexpr size_t kPerTaskOverhead = 1 + 10;

// How long the destructor waits, after the session closed, for the server to end the stream before
// cancelling it. Only a server that breaks the protocol makes this matter; nothing is lost then.
constexpr absl::Duration kCloseGrace = absl::Seconds(5);

absl::StatusCode CodeFromWire(int32_t code, absl::StatusCode if_ok) {
  if (code <= 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    // 0 would turn a failure into success; out-of-range codes are not canonical.
    return code == 0 ? if_ok : absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

absl::StatusOr<std::string> OutcomeToResult(v1::TaskOutcome& outcome) {
  switch (outcome.state()) {
    case v1::TASK_STATE_SUCCEEDED:
      if (outcome.items_size() > 0) {
        // Submit() never sends items, so only a Map() (not in this version) can get here.
        return absl::UnimplementedError("chunked outcomes need Map()");
      }
      return std::move(*outcome.mutable_result());
    case v1::TASK_STATE_FAILED:
    case v1::TASK_STATE_CANCELLED: {
      const v1::TaskError& error = outcome.error();
      const absl::StatusCode code = CodeFromWire(
          error.code(), outcome.state() == v1::TASK_STATE_CANCELLED ? absl::StatusCode::kCancelled
                                                                    : absl::StatusCode::kUnknown);
      if (error.exception_type().empty()) return absl::Status(code, error.message());
      return absl::Status(code, absl::StrCat(error.exception_type(), ": ", error.message()));
    }
    default:
      return absl::InternalError(absl::StrCat(
          "the service sent an outcome with no end state for task ", outcome.task_id()));
  }
}

gpr_timespec DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN));
}

}  // namespace

bool FutureState::Complete(absl::StatusOr<std::string> value) {
  absl::MutexLock lock(&mu);
  if (done) return false;
  result = std::move(value);
  done = true;
  return true;
}

Session::Session(const ExecutorOptions& options)
    : max_message_bytes_(options.max_message_bytes), client_name_(options.client_name) {}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const ExecutorOptions& options) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex runs the debug-only deadlock
  // detector: each Lock() takes a process-wide spinlock and a graph lookup, and each destroyed
  // Mutex (one per future) is removed from the graph. Measured against a trivial echo server that
  // is 95% of the client's CPU and caps it near 45k tasks/s; with detection off it does ~750k/s.
  // The setting is process-wide; it only drops a debugging aid, never changes locking semantics.
  static const bool detection_off = [] {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    return true;
  }();
  (void)detection_off;

  if (options.max_message_bytes <= static_cast<int>(kRequestOverhead + kPerTaskOverhead)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes is too small: ", options.max_message_bytes));
  }
  absl::StatusOr<std::string> target = ResolveEndpoint(options.endpoint);
  if (!target.ok()) return target.status();

  // Private constructor: absl::WrapUnique rather than std::make_unique.
  std::unique_ptr<Session> session = absl::WrapUnique(new Session(options));
  if (absl::Status status = session->Handshake(*target, options.connect_timeout); !status.ok()) {
    return status;
  }
  Session* self = session.get();
  self->writer_ = std::thread([self] { self->WriterLoop(); });
  self->reader_ = std::thread([self] { self->ReaderLoop(); });
  self->started_ = true;
  return session;
}

absl::Status Session::Handshake(const std::string& target, absl::Duration connect_timeout) {
  target_ = target;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(max_message_bytes_);
  args.SetMaxReceiveMessageSize(max_message_bytes_);
  channel_ = grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args);
  const absl::Time deadline = connect_timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + connect_timeout;
  const auto no_answer = [&] {
    return absl::UnavailableError(
        absl::StrCat("the mpigate service at ", target_, " did not answer within ",
                     absl::FormatDuration(connect_timeout), "; is it running?"));
  };
  if (!channel_->WaitForConnected(DeadlineAfter(connect_timeout))) return no_answer();

  stub_ = v1::Gateway::NewStub(channel_);
  stream_ = stub_->Session(&context_);

  // A service that accepts the connection but never answers `open` must not hang Connect(): a
  // watchdog cancels the call when the connect timeout runs out. (A deadline on the context would
  // bound the whole session, not just the handshake.)
  absl::Notification answered;
  std::atomic<bool> timed_out{false};
  std::thread watchdog([&] {
    const absl::Duration remaining = deadline - absl::Now();
    if (!answered.WaitForNotificationWithTimeout(remaining)) {
      timed_out.store(true);
      context_.TryCancel();
    }
  });

  v1::SessionRequest request;
  request.mutable_open()->set_client_name(client_name_);
  v1::SessionEvent event;
  // A failed Write means the call already ended; Read then fails too and Finish says why.
  const bool read = stream_->Write(request) && stream_->Read(&event);
  answered.Notify();
  watchdog.join();

  if (timed_out.load()) {
    stream_->Finish();  // Returns CANCELLED at once: we cancelled the call.
    return no_answer();
  }
  if (!read) {
    absl::Status status = FromGrpcStatus(stream_->Finish());
    if (status.ok()) {
      return absl::InternalError(
          absl::StrCat("the mpigate service at ", target_, " ended the session before opening it"));
    }
    return status;
  }
  if (event.event_case() != v1::SessionEvent::kOpened) {
    context_.TryCancel();
    stream_->Finish();
    return absl::InternalError(
        absl::StrCat("the mpigate service at ", target_, " answered `open` with event ",
                     static_cast<int>(event.event_case()), " instead of `opened`"));
  }
  workers_ = static_cast<int>(event.opened().workers());
  return absl::OkStatus();
}

Session::~Session() {
  if (!started_) return;  // Open() failed: no threads, and the call has been finished.
  Shutdown(/*wait=*/true, /*cancel_futures=*/false);
  {
    // After `closed` the server ends the stream, which ends the reader. Should it not, nothing is
    // pending any more, so cancelling the call loses nothing and frees the reader.
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Session::StreamEndedLocked), kCloseGrace)) {
      context_.TryCancel();
    }
  }
  writer_.join();
  reader_.join();
}

Future Session::Submit(absl::string_view function, std::string payload) {
  const uint64_t task_id = next_task_id_.fetch_add(1, std::memory_order_relaxed);
  auto state = std::make_shared<FutureState>(task_id);

  OutgoingTask task;
  task.spec.set_task_id(task_id);
  task.spec.set_function(std::string(function));
  task.spec.set_payload(std::move(payload));
  task.wire_bytes = task.spec.ByteSizeLong() + kPerTaskOverhead;
  // gRPC would fail the whole stream on an oversized message, taking every other task with it;
  // fail just this one.
  if (task.wire_bytes + kRequestOverhead > static_cast<size_t>(max_message_bytes_)) {
    state->Complete(absl::ResourceExhaustedError(absl::StrCat(
        "task ", task_id, " is ", task.wire_bytes, " bytes encoded, above the message limit of ",
        max_message_bytes_, " bytes (ExecutorOptions.max_message_bytes)")));
    return Future(std::move(state));
  }

  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_requested_) {
      refused = absl::FailedPreconditionError("cannot submit after shutdown");
    } else if (stream_ended_) {
      refused = end_status_;
    } else {
      // Registered before the writer can see the spec: the outcome may arrive before we return.
      pending_.emplace(task_id, state);
      // Unlocking wakes the writer: its Await condition becomes true.
      outgoing_.push_back(std::move(task));
    }
  }
  if (!refused.ok()) state->Complete(std::move(refused));
  return Future(std::move(state));
}

void Session::Shutdown(bool wait, bool cancel_futures) {
  absl::MutexLock lock(&mu_);
  if (!shutdown_requested_) {
    shutdown_requested_ = true;
    cancel_pending_ = cancel_futures;
  } else if (cancel_futures && !shutdown_taken_) {
    // A second call before the writer sent the first request can still ask for cancellation.
    cancel_pending_ = true;
  }
  if (wait) mu_.Await(absl::Condition(this, &Session::DrainedLocked));
}

bool Session::WriterHasWorkLocked() const {
  return !outgoing_.empty() || (shutdown_requested_ && !shutdown_taken_) || stream_ended_;
}

bool Session::DrainedLocked() const { return pending_.empty() && (closed_ || stream_ended_); }

void Session::WriterLoop() {
  std::vector<OutgoingTask> batch;
  for (;;) {
    bool send_shutdown = false;
    bool cancel_pending = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Session::WriterHasWorkLocked));
      // The reader has failed every pending future; there is no one left to send to.
      if (stream_ended_) return;
      // Take everything queued in one swap, together with the shutdown request if there is one:
      // every spec queued so far was submitted before the shutdown, so it goes out first.
      batch.swap(outgoing_);
      if (shutdown_requested_ && !shutdown_taken_) {
        shutdown_taken_ = true;
        send_shutdown = true;
        cancel_pending = cancel_pending_;
      }
    }
    // On a failed write the call is over: the reader's Read fails as well and it fails every
    // pending future, including the ones in this batch.
    if (!SendTasks(batch)) return;
    batch.clear();
    if (send_shutdown) {
      v1::SessionRequest request;
      request.mutable_shutdown()->set_cancel_pending(cancel_pending);
      if (stream_->Write(request)) stream_->WritesDone();
      // Nothing is sent after the shutdown: Submit() refuses new tasks from now on.
      return;
    }
  }
}

bool Session::SendTasks(std::vector<OutgoingTask>& batch) {
  const size_t budget =
      std::min(kBatchBytes, static_cast<size_t>(max_message_bytes_) - kRequestOverhead);
  v1::SessionRequest request;
  size_t next = 0;
  while (next < batch.size()) {
    auto* tasks = request.mutable_submit()->mutable_tasks();
    size_t bytes = 0;
    // At least one task per message; Submit() made sure any single task fits the limit.
    do {
      bytes += batch[next].wire_bytes;
      tasks->Add(std::move(batch[next].spec));
      ++next;
    } while (next < batch.size() && bytes + batch[next].wire_bytes <= budget);
    if (!stream_->Write(request)) return false;
    request.Clear();
  }
  return true;
}

void Session::ReaderLoop() {
  v1::SessionEvent event;
  while (stream_->Read(&event)) {
    switch (event.event_case()) {
      case v1::SessionEvent::kUpdates:
        HandleCompleted(*event.mutable_updates());
        break;
      case v1::SessionEvent::kRejected:
        HandleRejected(event.rejected());
        break;
      case v1::SessionEvent::kClosed: {
        absl::MutexLock lock(&mu_);
        closed_ = true;
        break;
      }
      default:
        // cancel_results: nothing to do, each cancelled task also gets a CANCELLED outcome.
        // Anything else (a second `opened`, a newer server's event) carries nothing we need.
        break;
    }
  }
  const grpc::Status finish = stream_->Finish();

  // Fail whatever is still pending. stream_ended_ is set in the same critical section that takes
  // the list, so no Submit() can add a future after it.
  const absl::Status lost = absl::UnavailableError(
      absl::StrCat("connection to the mpigate service lost: ",
                   finish.ok() ? "the service ended the session" : finish.error_message()));
  std::vector<std::pair<std::shared_ptr<FutureState>, absl::StatusOr<std::string>>> orphans;
  {
    absl::MutexLock lock(&mu_);
    stream_ended_ = true;
    end_status_ = lost;
    orphans.reserve(pending_.size());
    for (const auto& [task_id, state] : pending_) orphans.emplace_back(state, lost);
  }
  FinishFutures(orphans);
}

void Session::HandleCompleted(v1::TaskUpdates& completed) {
  std::vector<std::pair<std::shared_ptr<FutureState>, absl::StatusOr<std::string>>> results;
  results.reserve(completed.outcomes_size());
  {
    absl::MutexLock lock(&mu_);
    for (v1::TaskOutcome& outcome : *completed.mutable_outcomes()) {
      auto it = pending_.find(outcome.task_id());
      // Not ours (or already failed): a broken server; there is no future to give it to.
      if (it == pending_.end()) continue;
      // Only builds a Status or moves the result string: cheap enough to do under the lock.
      results.emplace_back(it->second, OutcomeToResult(outcome));
    }
  }
  FinishFutures(results);
}

void Session::HandleRejected(const v1::TaskRejections& rejected) {
  std::vector<std::pair<std::shared_ptr<FutureState>, absl::StatusOr<std::string>>> results;
  results.reserve(rejected.rejections_size());
  {
    absl::MutexLock lock(&mu_);
    for (const v1::TaskRejection& rejection : rejected.rejections()) {
      auto it = pending_.find(rejection.task_id());
      if (it == pending_.end()) continue;
      results.emplace_back(it->second,
                           absl::Status(CodeFromWire(rejection.code(), absl::StatusCode::kUnknown),
                                        rejection.message()));
    }
  }
  FinishFutures(results);
}

void Session::FinishFutures(
    std::vector<std::pair<std::shared_ptr<FutureState>, absl::StatusOr<std::string>>>& results) {
  if (results.empty()) return;
  // Outside mu_: waking a future's waiters must not stall submitters.
  for (auto& [state, result] : results) state->Complete(std::move(result));
  // Only now leave pending_, so that Shutdown(wait) cannot return before these futures are done.
  absl::MutexLock lock(&mu_);
  for (const auto& [state, result] : results) pending_.erase(state->task_id);
}

}  // namespace mpigate::internal
