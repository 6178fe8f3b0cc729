#include "client/internal/session.h"

#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/access.h"
#include "common/endpoint.h"
#include "common/grpc_status.h"
#include "common/shared_memory.h"

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

// A task id adds at most this much to a TaskSpec's encoding (a tag and a 10-byte varint); specs are
// measured before they get their id.
constexpr size_t kTaskIdBytes = 1 + 10;

// How long the destructor waits, after the session closed, for the server to end the stream before
// cancelling it. Only a server that breaks the protocol makes this matter; nothing is lost then.
constexpr absl::Duration kCloseGrace = absl::Seconds(5);

// Acknowledgements go out in batches: once this many outcomes are waiting, or they hold this many
// bytes on the service, or the oldest has waited this long. A burst of results costs one `ack`
// per few thousand tasks, and a sequential client one per kAckDelay, never one per task; the
// service holds what a client has read for at most about that long.
constexpr size_t kAckBatch = 4096;
constexpr size_t kAckBytes = 4 << 20;
constexpr absl::Duration kAckDelay = absl::Milliseconds(20);

// Resuming a broken session: the first retry after this long, doubling up to kMaxResumeBackoff.
constexpr absl::Duration kFirstResumeBackoff = absl::Milliseconds(20);
constexpr absl::Duration kMaxResumeBackoff = absl::Seconds(1);

absl::StatusCode CodeFromWire(int32_t code, absl::StatusCode if_ok) {
  if (code <= 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    // 0 would turn a failure into success; out-of-range codes are not canonical.
    return code == 0 ? if_ok : absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

absl::Status StatusFromError(const v1::TaskError& error, absl::StatusCode if_ok) {
  const absl::StatusCode code = CodeFromWire(error.code(), if_ok);
  if (error.exception_type().empty()) return absl::Status(code, error.message());
  return absl::Status(code, absl::StrCat(error.exception_type(), ": ", error.message()));
}

// Moves the result bytes out of `outcome`.
Ending EndingOf(v1::TaskOutcome& outcome) {
  Ending ending;
  ending.attempts = outcome.attempts();
  switch (outcome.state()) {
    case v1::TASK_STATE_SUCCEEDED:
      ending.result = std::move(*outcome.mutable_result());
      ending.items.reserve(outcome.items_size());
      for (v1::ItemOutcome& item : *outcome.mutable_items()) {
        if (item.has_error()) {
          ending.items.push_back(StatusFromError(item.error(), absl::StatusCode::kUnknown));
        } else {
          ending.items.push_back(std::move(*item.mutable_result()));
        }
      }
      break;
    case v1::TASK_STATE_FAILED:
      ending.result = StatusFromError(outcome.error(), absl::StatusCode::kUnknown);
      break;
    case v1::TASK_STATE_CANCELLED:
      ending.state = FutureState::kCancelled;
      ending.result = StatusFromError(outcome.error(), absl::StatusCode::kCancelled);
      break;
    default:
      ending.result = absl::InternalError(absl::StrCat(
          "the service sent an outcome with no end state for task ", outcome.task_id()));
  }
  return ending;
}

// A timeout in whole milliseconds, rounded up; 0 on the wire means no limit, so a timeout that
// rounds to nothing becomes 1 ms.
uint64_t WholeMillisecondsAtLeastOne(absl::Duration timeout) {
  return static_cast<uint64_t>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)))));
}

gpr_timespec DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN));
}

// A Session call ended with `status` without `closed`: whether that looks like a broken connection
// (worth resuming) rather than the service ending the session on purpose (OK, or an error about
// the request such as INVALID_ARGUMENT).
bool LooksBroken(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

// Opening a call to resume the session failed with `status`: whether a later attempt may succeed
// (the service unreachable or restarting its listener, or still holding the old stream).
bool MayResumeLater(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsFailedPrecondition(status) ||
         absl::IsDeadlineExceeded(status) || absl::IsCancelled(status);
}

// Releases the shared memory object holding the input of `spec`, which never reached the service.
void ReleaseInput(const v1::TaskSpec& spec) {
  if (spec.has_shared_payload()) ReleaseSharedObject(spec.shared_payload().name());
}

// Removes the shared memory object holding the input of `spec`, which the service may have.
void RemoveInput(const v1::TaskSpec& spec) {
  if (spec.has_shared_payload()) UnlinkSharedObject(spec.shared_payload().name());
}

}  // namespace

Session::Session(const ExecutorOptions& options)
    : max_message_bytes_(options.max_message_bytes),
      client_name_(options.client_name),
      env_(options.env),
      max_running_tasks_(options.max_running_tasks),
      connect_timeout_(options.connect_timeout),
      shared_memory_min_bytes_(options.shared_memory_min_bytes),
      shared_memory_domain_(options.shared_memory_min_bytes > 0 ? SharedMemoryDomain() : "") {}

absl::StatusOr<std::shared_ptr<Session>> Session::Open(const ExecutorOptions& options) {
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
  absl::StatusOr<Connection> connection = ResolveConnection(
      options.endpoint, {options.token, options.tls_ca, options.tls_cert, options.tls_key});
  if (!connection.ok()) return connection.status();

  // Private constructor: no std::make_shared.
  std::shared_ptr<Session> session(new Session(options));
  if (absl::Status status = session->Connect(*connection, options); !status.ok()) return status;
  Session* self = session.get();
  self->writer_ = std::thread([self] { self->WriterLoop(); });
  self->reader_ = std::thread([self] { self->ReaderLoop(); });
  self->reader_id_ = self->reader_.get_id();
  return session;
}

absl::Status Session::Connect(const Connection& connection, const ExecutorOptions& options) {
  target_ = connection.target;
  token_ = connection.token;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(max_message_bytes_);
  args.SetMaxReceiveMessageSize(max_message_bytes_);
  // After a dropped connection the channel reconnects within a second, not gRPC's default of up
  // to two minutes, so that a resumed session is back well within the service's grace period.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at its default: gRPC takes it as the time a connection
  // attempt, handshake included, may last, and at 100 ms a loaded service's handshakes were cut
  // off and tried again and again.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = grpc::CreateCustomChannel(target_, connection.credentials, args);
  const absl::Time deadline = connect_timeout_ == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + connect_timeout_;
  if (!channel_->WaitForConnected(DeadlineAfter(connect_timeout_))) {
    return absl::UnavailableError(
        absl::StrCat("the mpigate service at ", target_, " did not answer within ",
                     absl::FormatDuration(connect_timeout_), "; is it running?"));
  }
  stub_ = v1::Gateway::NewStub(channel_);

  v1::SessionOpened opened;
  absl::StatusOr<Call> call;
  if (options.resume_token.empty()) {
    call = OpenCall(OpenRequest(), deadline, /*wait_for_ready=*/false, opened);
  } else {
    resume_token_ = options.resume_token;
    // A resumed session's grace period is not known yet; Connect's own timeout bounds the tries.
    absl::MutexLock lock(&mu_);
    acks_ = options.acked_task_ids;
    call = ResumeCall(deadline, opened);
  }
  if (!call.ok()) return call.status();

  // Before any task can be submitted, and never changed after: read without the lock.
  shared_memory_prefix_ = opened.shared_memory_prefix();
  send_limit_ = static_cast<size_t>(max_message_bytes_);
  if (opened.max_message_bytes() > 0) {
    send_limit_ = std::min<uint64_t>(send_limit_, opened.max_message_bytes());
  }
  absl::MutexLock lock(&mu_);
  resume_token_ = opened.resume_token();
  resume_grace_ = absl::Milliseconds(static_cast<int64_t>(std::min<uint64_t>(
      opened.resume_grace_ms(), static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
  // A resumed session's earlier tasks: new ids continue after them, and their futures are made
  // before the reader can deliver their outcomes.
  next_task_id_ = opened.last_task_id() + 1;
  for (const uint64_t task_id : opened.pending_task_ids()) {
    auto core = std::make_shared<FutureCore>(task_id, weak_from_this());
    pending_.emplace(task_id, core);
    reattached_.push_back(FutureAccess::Make(std::move(core)));
  }
  AdoptLocked(*std::move(call), opened);
  return absl::OkStatus();
}

absl::StatusOr<Session::Call> Session::OpenCall(const v1::SessionRequest& open, absl::Time deadline,
                                                bool wait_for_ready, v1::SessionOpened& opened) {
  Call call;
  call.context = std::make_unique<grpc::ClientContext>();
  call.context->set_wait_for_ready(wait_for_ready);
  AttachToken(*call.context, token_);
  grpc::ClientContext& context = *call.context;
  call.stream = stub_->Session(&context);

  // A service that accepts the connection but never answers `open` must not hang: a watchdog
  // cancels the call when the deadline passes. (A deadline on the context would bound the whole
  // session, not just the handshake.)
  absl::Notification answered;
  std::atomic<bool> timed_out{false};
  std::thread watchdog([&] {
    if (!answered.WaitForNotificationWithDeadline(deadline)) {
      timed_out.store(true);
      context.TryCancel();
    }
  });
  v1::SessionEvent event;
  // A failed Write means the call already ended; Read then fails too and Finish says why.
  const bool read = call.stream->Write(open) && call.stream->Read(&event);
  answered.Notify();
  watchdog.join();

  if (timed_out.load()) {
    call.stream->Finish();  // Returns CANCELLED at once: we cancelled the call.
    return absl::UnavailableError(absl::StrCat("the mpigate service at ", target_,
                                               " did not answer `open` in time; is it running?"));
  }
  if (!read) {
    absl::Status status = FromGrpcStatus(call.stream->Finish());
    if (status.ok()) {
      return absl::InternalError(
          absl::StrCat("the mpigate service at ", target_, " ended the session before opening it"));
    }
    return status;
  }
  if (event.event_case() != v1::SessionEvent::kOpened) {
    context.TryCancel();
    call.stream->Finish();
    return absl::InternalError(
        absl::StrCat("the mpigate service at ", target_, " answered `open` with event ",
                     static_cast<int>(event.event_case()), " instead of `opened`"));
  }
  opened = std::move(*event.mutable_opened());
  return call;
}

v1::SessionRequest Session::OpenRequest() const {
  v1::SessionRequest open;
  open.mutable_open()->set_client_name(client_name_);
  open.mutable_open()->set_max_message_bytes(static_cast<uint64_t>(max_message_bytes_));
  open.mutable_open()->mutable_env()->insert(env_.begin(), env_.end());
  open.mutable_open()->set_max_running_tasks(max_running_tasks_);
  if (!shared_memory_domain_.empty()) {
    open.mutable_open()->set_shared_memory_domain(shared_memory_domain_);
    open.mutable_open()->set_shared_result_min_bytes(shared_memory_min_bytes_);
  }
  return open;
}

absl::StatusOr<Session::Call> Session::ResumeCall(absl::Time deadline, v1::SessionOpened& opened) {
  v1::SessionRequest open = OpenRequest();
  open.mutable_open()->set_resume_token(resume_token_);
  // The writer is idle and only this thread adds to acks_, so they cannot change meanwhile.
  open.mutable_open()->mutable_acked_task_ids()->Add(acks_.begin(), acks_.end());
  absl::Duration backoff = kFirstResumeBackoff;
  for (;;) {
    mu_.Unlock();
    absl::StatusOr<Call> call = OpenCall(open, std::min(deadline, absl::Now() + connect_timeout_),
                                         /*wait_for_ready=*/true, opened);
    mu_.Lock();
    if (call.ok()) {
      acks_.clear();
      ack_bytes_ = 0;
      ack_due_ = absl::InfiniteFuture();
      return call;
    }
    if (!MayResumeLater(call.status()) || closing_ || absl::Now() + backoff >= deadline) {
      return call.status();
    }
    // Close() cuts the wait short.
    mu_.AwaitWithTimeout(absl::Condition(this, &Session::ClosingLocked), backoff);
    backoff = std::min(2 * backoff, kMaxResumeBackoff);
  }
}

void Session::AdoptLocked(Call call, const v1::SessionOpened& opened) {
  if (opened.workers() > 0) workers_ = static_cast<int>(opened.workers());
  // A service that does not describe its pool opens sessions only once it is ready.
  if (opened.has_pool()) HandlePoolState(opened.pool());
  if (opened.resumed()) {
    // The service has every spec up to last_task_id; the rest go again, before anything queued
    // since (which has higher ids).
    ReceivedUpToLocked(opened.last_task_id());
    std::vector<OutgoingTask> resend;
    for (SentBatch& batch : sent_) {
      for (OutgoingTask& task : batch.tasks) {
        if (task.spec.task_id() > opened.last_task_id()) resend.push_back(std::move(task));
      }
    }
    sent_.clear();
    std::move(outgoing_.begin(), outgoing_.end(), std::back_inserter(resend));
    outgoing_ = std::move(resend);
    // Unanswered cancels may never have arrived; asking again is harmless.
    cancels_queued_.insert(cancels_queued_.begin(), cancels_sent_.begin(), cancels_sent_.end());
    cancels_sent_.clear();
    shutdown_taken_ = false;
  }
  call_ = std::move(call);
  writer_stream_ = call_.stream.get();
  call_context_ = call_.context.get();
  connected_ = true;
}

// Close() has joined both threads, or Open() failed before starting them.
Session::~Session() = default;

void Session::Close() {
  Shutdown(/*wait=*/true, /*cancel_futures=*/false);
  {
    // After `closed` the server ends the stream, which ends the reader. Should it not, nothing is
    // pending any more, so cancelling the call (and any resuming) loses nothing and frees the
    // reader.
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &Session::StreamEndedLocked), kCloseGrace)) {
      closing_ = true;
      if (call_context_ != nullptr) call_context_->TryCancel();
    }
  }
  writer_.join();
  reader_.join();
}

Session::OutgoingTask Session::NewTask(absl::string_view function, const SubmitOptions& options) {
  OutgoingTask task;
  task.spec.set_function(std::string(function));
  task.spec.set_payload_type(options.payload_type);
  if (options.queue_timeout != absl::InfiniteDuration()) {
    task.spec.mutable_options()->set_queue_timeout_ms(
        WholeMillisecondsAtLeastOne(options.queue_timeout));
  }
  if (options.gang_size != 0) task.spec.mutable_options()->set_gang_size(options.gang_size);
  if (options.run_timeout != absl::InfiniteDuration()) {
    task.spec.mutable_options()->set_run_timeout_ms(
        WholeMillisecondsAtLeastOne(options.run_timeout));
  }
  task.spec.mutable_options()->set_max_retries(options.max_retries);
  return task;
}

void Session::SetPayload(OutgoingTask& task, std::string payload) const {
  if (!shared_memory_prefix_.empty() && payload.size() >= shared_memory_min_bytes_) {
    absl::StatusOr<std::string> name = CreateSharedObject(shared_memory_prefix_, payload);
    if (name.ok()) {
      task.spec.mutable_shared_payload()->set_name(*std::move(name));
      task.spec.mutable_shared_payload()->set_size(payload.size());
      return;
    }
  }
  task.spec.set_payload(std::move(payload));
}

Future Session::Submit(absl::string_view function, std::string payload,
                       const SubmitOptions& options) {
  OutgoingTask task = NewTask(function, options);
  SetPayload(task, std::move(payload));
  return Enqueue(std::move(task));
}

Future Session::SubmitChunk(absl::string_view function, std::vector<std::string> items,
                            const SubmitOptions& options) {
  OutgoingTask task = NewTask(function, options);
  task.spec.mutable_items()->Reserve(static_cast<int>(items.size()));
  for (std::string& item : items) task.spec.add_items(std::move(item));
  return Enqueue(std::move(task));
}

Future Session::SubmitRange(absl::string_view function, std::string payload,
                            const v1::RangeSpec& range, const SubmitOptions& options) {
  OutgoingTask task = NewTask(function, options);
  SetPayload(task, std::move(payload));
  *task.spec.mutable_range() = range;
  return Enqueue(std::move(task));
}

Future Session::SubmitBroadcast(absl::string_view function, std::string payload,
                                const SubmitOptions& options) {
  OutgoingTask task = NewTask(function, options);
  SetPayload(task, std::move(payload));
  task.spec.mutable_options()->set_broadcast(true);
  return Enqueue(std::move(task));
}

Future Session::Enqueue(OutgoingTask task) {
  // Measured before the id is known, with room for any id.
  task.wire_bytes = task.spec.ByteSizeLong() + kTaskIdBytes + kPerTaskOverhead;
  // gRPC would fail the whole stream on an oversized message, taking every other task with it;
  // fail just this one. It never gets an id: the service never hears of it.
  if (task.wire_bytes + kRequestOverhead > send_limit_) {
    return FutureCore::Failed(
        0, absl::ResourceExhaustedError(absl::StrCat(
               "the task is ", task.wire_bytes, " bytes encoded, above the message limit of ",
               send_limit_,
               " bytes (the smaller of ExecutorOptions.max_message_bytes and the service's "
               "--max_message_mb)")));
  }

  std::shared_ptr<FutureCore> core;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_requested_ || stream_ended_) {
      // The service never hears of the task: its input is still ours to remove.
      ReleaseInput(task.spec);
      return FutureCore::Failed(
          0, shutdown_requested_ ? absl::FailedPreconditionError("cannot submit after shutdown")
                                 : end_status_);
    }
    // Under mu_, so that ids increase in the order specs are queued and sent (see the invariants).
    const uint64_t task_id = next_task_id_++;
    task.spec.set_task_id(task_id);
    core = std::make_shared<FutureCore>(task_id, weak_from_this());
    // Registered before the writer can see the spec: the outcome may arrive before we return.
    pending_.emplace(task_id, core);
    // Unlocking wakes the writer: its Await condition becomes true.
    outgoing_.push_back(std::move(task));
  }
  return FutureAccess::Make(std::move(core));
}

size_t Session::Cancel(std::vector<uint64_t> task_ids, bool wait, CancelMode mode) {
  if (task_ids.empty()) return 0;
  auto request = std::make_shared<CancelRequest>();
  request->task_ids = std::move(task_ids);
  request->mode = mode;
  {
    absl::MutexLock lock(&mu_);
    // After `closed`, or once the stream is over, no task of this session is pending any more.
    if (closed_ || stream_ended_) return 0;
    cancels_queued_.push_back(request);
  }
  // The reader thread delivers the answer; it cannot wait for itself.
  if (!wait || std::this_thread::get_id() == reader_id_) return 0;
  request->answered.WaitForNotification();
  return request->interrupted;
}

void Session::Shutdown(bool wait, bool cancel_futures) {
  std::vector<uint64_t> unfinished;
  {
    absl::MutexLock lock(&mu_);
    shutdown_requested_ = true;
    if (cancel_futures) {
      unfinished.reserve(pending_.size());
      for (const auto& [task_id, core] : pending_) unfinished.push_back(task_id);
    }
  }
  // An explicit `cancel` rather than `shutdown{cancel_pending}`: it has an answer to wait for, so
  // pending futures are CANCELLED when Shutdown() returns even with wait=false (as in
  // concurrent.futures), and it still works after an earlier Shutdown() sent `shutdown`. The
  // service skips the tasks that have started.
  Cancel(std::move(unfinished), /*wait=*/true, CancelMode::kPendingOnly);
  if (wait) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Session::DrainedLocked));
  }
}

absl::Status Session::Bootup(bool wait) {
  absl::MutexLock lock(&mu_);
  if (shutdown_requested_) return absl::FailedPreconditionError("cannot bootup after shutdown");
  if (wait) mu_.Await(absl::Condition(this, &Session::BootedLocked));
  switch (pool_state_) {
    case PoolState::kBroken:
      // The same words the service uses when it fails a task of a broken pool.
      return absl::FailedPreconditionError(absl::StrCat("BrokenExecutor: ", pool_reason_));
    case PoolState::kDraining:
      return absl::UnavailableError(
          absl::StrCat("the mpigate service is draining: ", pool_reason_));
    case PoolState::kBooting:
    case PoolState::kReady:
      break;
  }
  return stream_ended_ ? end_status_ : absl::OkStatus();
}

PoolState Session::pool_state() const {
  absl::MutexLock lock(&mu_);
  return pool_state_;
}

int Session::workers() const {
  absl::MutexLock lock(&mu_);
  return workers_;
}

absl::StatusOr<std::vector<FunctionInfo>> Session::ListFunctions(absl::Duration timeout) const {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  AttachToken(context, token_);
  v1::ListFunctionsResponse response;
  const grpc::Status status = stub_->ListFunctions(&context, v1::ListFunctionsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::vector<FunctionInfo> functions;
  functions.reserve(response.functions_size());
  for (v1::FunctionInfo& function : *response.mutable_functions()) {
    functions.push_back(FunctionInfo{
        std::move(*function.mutable_name()), std::move(*function.mutable_description()),
        std::move(*function.mutable_request_type()), std::move(*function.mutable_response_type()),
        function.gang()});
  }
  return functions;
}

bool Session::WriterHasWorkLocked() const {
  return stream_ended_ || closed_ || SendableLocked() ||
         // Acknowledgements queued since the writer began to wait: it waits again, until their
         // deadline.
         (connected_ && !acks_.empty() && ack_due_ < writer_wake_);
}

bool Session::SendableLocked() const {
  return connected_ && (!outgoing_.empty() || !cancels_queued_.empty() ||
                        (shutdown_requested_ && !shutdown_taken_) || AcksDueLocked());
}

bool Session::AcksDueLocked() const { return acks_.size() >= kAckBatch || ack_bytes_ >= kAckBytes; }

bool Session::DrainedLocked() const { return pending_.empty() && (closed_ || stream_ended_); }

bool Session::BootedLocked() const { return pool_state_ != PoolState::kBooting || stream_ended_; }

void Session::WriterLoop() {
  std::vector<OutgoingTask> batch;
  std::vector<std::shared_ptr<CancelRequest>> cancels;
  std::vector<uint64_t> acks;
  v1::SessionRequest request;
  for (;;) {
    bool send_shutdown = false;
    StreamType* stream = nullptr;
    {
      absl::MutexLock lock(&mu_);
      const absl::Condition has_work(this, &Session::WriterHasWorkLocked);
      // Acknowledgements that are not due by number or size wait until kAckDelay has passed.
      bool timed_out = false;
      do {
        writer_wake_ = connected_ && !acks_.empty() ? ack_due_ : absl::InfiniteFuture();
        timed_out = !mu_.AwaitWithDeadline(has_work, writer_wake_);
      } while (!timed_out && !stream_ended_ && !closed_ && !SendableLocked());
      writer_wake_ = absl::InfiniteFuture();
      // Session over: the reader fails pending futures and releases cancel waiters. Closed: no
      // task is pending, so there is nothing left to send.
      if (stream_ended_ || closed_) return;
      if (!connected_) continue;
      // Take everything queued in one swap. Specs go out first: every cancel and the shutdown
      // were requested after the tasks they concern were queued.
      batch.swap(outgoing_);
      cancels.swap(cancels_queued_);
      // Before the write, so that the answer, however quick, finds its request.
      cancels_sent_.insert(cancels_sent_.end(), cancels.begin(), cancels.end());
      if (shutdown_requested_ && !shutdown_taken_) {
        shutdown_taken_ = true;
        send_shutdown = true;
      }
      if (!acks_.empty() && (timed_out || AcksDueLocked() || absl::Now() >= ack_due_)) {
        acks.swap(acks_);
        ack_bytes_ = 0;
        ack_due_ = absl::InfiniteFuture();
      }
      stream = writer_stream_;
      writer_busy_ = true;
    }
    // A failed write means the call is over: the reader's Read fails too, and it resumes the
    // session (which sends again what this stream may have lost) or ends it.
    bool ok = SendTasks(stream, batch);
    for (const std::shared_ptr<CancelRequest>& cancel : cancels) {
      if (!ok) break;
      request.mutable_cancel()->mutable_task_ids()->Add(cancel->task_ids.begin(),
                                                        cancel->task_ids.end());
      request.mutable_cancel()->set_interrupt_running(cancel->mode == CancelMode::kInterrupt);
      request.mutable_cancel()->set_force(cancel->mode == CancelMode::kKill);
      ok = stream->Write(request);
      request.Clear();
    }
    cancels.clear();
    if (ok && send_shutdown) {
      request.mutable_shutdown();
      ok = stream->Write(request);
      request.Clear();
    }
    // Lost with a broken stream, acknowledgements cost only a repeat: the resumed session sends
    // those outcomes again, and the reader acknowledges them again.
    if (ok && !acks.empty()) {
      request.mutable_ack()->mutable_task_ids()->Add(acks.begin(), acks.end());
      ok = stream->Write(request);
      request.Clear();
    }
    acks.clear();
    absl::MutexLock lock(&mu_);
    writer_busy_ = false;
    // Stops writing to a broken stream until the reader has a new one.
    if (!ok) connected_ = false;
    if (!batch.empty()) {
      const uint64_t last_task_id = batch.back().spec.task_id();
      sent_.push_back(SentBatch{last_task_id, std::move(batch)});
      batch.clear();
    }
  }
}

bool Session::SendTasks(StreamType* stream, std::vector<OutgoingTask>& batch) {
  const size_t budget = std::min(kBatchBytes, send_limit_ - kRequestOverhead);
  v1::SessionRequest request;
  size_t next = 0;
  while (next < batch.size()) {
    auto* tasks = request.mutable_submit()->mutable_tasks();
    const size_t first = next;
    size_t bytes = 0;
    // At least one task per message; Enqueue() made sure any single task fits the limit.
    do {
      bytes += batch[next].wire_bytes;
      tasks->Add(std::move(batch[next].spec));
      ++next;
    } while (next < batch.size() && bytes + batch[next].wire_bytes <= budget);
    const bool ok = stream->Write(request);
    // Back into the batch, for sent_: moving a message swaps its fields, so no payload is copied.
    for (size_t i = first; i < next; ++i) {
      batch[i].spec = std::move(*tasks->Mutable(static_cast<int>(i - first)));
    }
    if (!ok) return false;
    request.Clear();
  }
  return true;
}

void Session::ReaderLoop() {
  v1::SessionEvent event;
  absl::Status lost;
  for (;;) {
    while (call_.stream->Read(&event)) {
      switch (event.event_case()) {
        case v1::SessionEvent::kUpdates:
          HandleUpdates(*event.mutable_updates());
          break;
        case v1::SessionEvent::kRejected:
          HandleRejected(event.rejected());
          break;
        case v1::SessionEvent::kCancelResults:
          HandleCancelResults(event.cancel_results());
          break;
        case v1::SessionEvent::kPool: {
          absl::MutexLock lock(&mu_);
          HandlePoolState(event.pool());
          break;
        }
        case v1::SessionEvent::kClosed: {
          absl::MutexLock lock(&mu_);
          closed_ = true;
          break;
        }
        default:
          // A second `opened`, or a newer server's event: nothing we need.
          break;
      }
    }
    const grpc::Status finish = EndCall();
    if (!ShouldResume(finish)) {
      lost = absl::UnavailableError(
          absl::StrCat("connection to the mpigate service lost: ",
                       finish.ok() ? "the service ended the session" : finish.error_message()));
      break;
    }
    // The service keeps the session for its grace period from when it noticed the break, which
    // is no earlier than now.
    const absl::Time deadline = absl::Now() + resume_grace_;
    v1::SessionOpened opened;
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Call> call = ResumeCall(deadline, opened);
    if (!call.ok()) {
      lost = absl::UnavailableError(
          absl::StrCat("connection to the mpigate service lost (", finish.error_message(),
                       ") and the session could not be resumed within its grace period of ",
                       absl::FormatDuration(resume_grace_), ": ", call.status().message()));
      break;
    }
    AdoptLocked(*std::move(call), opened);
  }

  // Fail whatever is still pending and release every cancel waiter. stream_ended_ is set in the
  // same critical section that takes the lists, so no Submit() or Cancel() can add to them after.
  std::vector<Completion> orphans;
  std::vector<std::shared_ptr<CancelRequest>> cancels;
  {
    absl::MutexLock lock(&mu_);
    stream_ended_ = true;
    end_status_ = lost;
    orphans.reserve(pending_.size());
    for (const auto& [task_id, core] : pending_) {
      orphans.emplace_back(core, Ending{FutureState::kFinished, lost, {}});
    }
    cancels.swap(cancels_queued_);
    cancels.insert(cancels.end(), cancels_sent_.begin(), cancels_sent_.end());
    cancels_sent_.clear();
    // Inputs the service may never have had: nothing will run them now. Removed, not parked for
    // reuse: a task the service did get may still be reading its input.
    for (const SentBatch& batch : sent_) {
      for (const OutgoingTask& task : batch.tasks) RemoveInput(task.spec);
    }
    for (const OutgoingTask& task : outgoing_) ReleaseInput(task.spec);
    sent_.clear();
  }
  FinishFutures(orphans);
  for (const std::shared_ptr<CancelRequest>& cancel : cancels) cancel->answered.Notify();
}

grpc::Status Session::EndCall() {
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    // A write to a call that is over fails at once, so this is short.
    mu_.Await(absl::Condition(this, &Session::WriterIdleLocked));
    writer_stream_ = nullptr;
    call_context_ = nullptr;
  }
  return call_.stream->Finish();
}

bool Session::ShouldResume(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  // A draining service is going away with its sessions: there is nothing to resume.
  return !closed_ && !closing_ && pool_state_ != PoolState::kDraining && !resume_token_.empty() &&
         resume_grace_ > absl::ZeroDuration() && LooksBroken(status);
}

void Session::HandleUpdates(v1::TaskUpdates& updates) {
  std::vector<std::shared_ptr<FutureCore>> started;
  std::vector<std::pair<std::shared_ptr<FutureCore>, TaskProgress>> progress;
  std::vector<Completion> completions;
  // Every outcome is acknowledged once handled, also one that finds no future: it was ended by a
  // cancel answer, or sent again after a resume, and the service holds it until acknowledged.
  std::vector<uint64_t> handled;
  size_t handled_bytes = 0;
  // Completions whose results are in shared memory, by index, read once the lock is released; and
  // the objects of outcomes that found no future, which nobody reads.
  std::vector<std::pair<size_t, v1::SharedBytes>> shared_results;
  std::vector<std::string> unread_shared;
  started.reserve(updates.started_size());
  progress.reserve(updates.progress_size());
  completions.reserve(updates.outcomes_size());
  handled.reserve(updates.outcomes_size());
  {
    uint64_t highest = 0;
    absl::MutexLock lock(&mu_);
    for (const uint64_t task_id : updates.started()) {
      highest = std::max(highest, task_id);
      auto it = pending_.find(task_id);
      if (it != pending_.end()) started.push_back(it->second);
    }
    for (v1::TaskProgress& report : *updates.mutable_progress()) {
      highest = std::max(highest, report.task_id());
      auto it = pending_.find(report.task_id());
      if (it == pending_.end()) continue;
      progress.emplace_back(it->second,
                            TaskProgress{report.fraction(), std::move(*report.mutable_message())});
    }
    for (v1::TaskOutcome& outcome : *updates.mutable_outcomes()) {
      highest = std::max(highest, outcome.task_id());
      handled.push_back(outcome.task_id());
      handled_bytes += outcome.ByteSizeLong() + outcome.shared_result().size();
      auto it = pending_.find(outcome.task_id());
      // Already ended by a cancel answer, or delivered before a resume: nothing to give it to.
      if (it == pending_.end()) {
        if (outcome.has_shared_result()) {
          unread_shared.push_back(std::move(*outcome.mutable_shared_result()->mutable_name()));
        }
        continue;
      }
      if (outcome.has_shared_result()) {
        shared_results.emplace_back(completions.size(),
                                    std::move(*outcome.mutable_shared_result()));
      }
      // Only builds Statuses and moves result strings: cheap enough to do under the lock.
      completions.emplace_back(it->second, EndingOf(outcome));
    }
    ReceivedUpToLocked(highest);
  }
  for (auto& [index, shared] : shared_results) {
    Ending& ending = completions[index].second;
    // One small enough to be recycled is copied out now, so that its object can be parked for
    // the next payload; a larger one stays mapped, saving a copy.
    if (shared.size() <= kMaxParkedObjectBytes) {
      ending.result = ReadSharedObject(shared.name(), shared.size());
      continue;
    }
    absl::StatusOr<SharedMapping> mapped = SharedMapping::Map(shared.name(), shared.size());
    if (mapped.ok()) {
      ending.shared_result = *std::move(mapped);
    } else {
      ending.result = mapped.status();
    }
  }
  // Starts first: a start is reported no later than the task's progress, and progress before the
  // task's end.
  for (const std::shared_ptr<FutureCore>& core : started) core->MarkRunning();
  for (const auto& [core, report] : progress) FutureCore::ReportProgress(core, report);
  FinishFutures(completions, handled, handled_bytes);
  // The reader of a shared result releases its object (the service only releases those it
  // drops); after the futures, since freeing a large object's pages takes a while.
  for (const auto& [index, shared] : shared_results) ReleaseSharedObject(shared.name());
  for (const std::string& name : unread_shared) ReleaseSharedObject(name);
}

void Session::ReceivedUpToLocked(uint64_t task_id) {
  while (!sent_.empty() && sent_.front().last_task_id <= task_id) sent_.pop_front();
}

void Session::HandleRejected(const v1::TaskRejections& rejected) {
  std::vector<Completion> completions;
  completions.reserve(rejected.rejections_size());
  {
    absl::MutexLock lock(&mu_);
    uint64_t highest = 0;
    for (const v1::TaskRejection& rejection : rejected.rejections()) {
      highest = std::max(highest, rejection.task_id());
    }
    ReceivedUpToLocked(highest);
    for (const v1::TaskRejection& rejection : rejected.rejections()) {
      auto it = pending_.find(rejection.task_id());
      if (it == pending_.end()) continue;
      completions.emplace_back(
          it->second,
          Ending{FutureState::kFinished,
                 absl::Status(CodeFromWire(rejection.code(), absl::StatusCode::kUnknown),
                              rejection.message()),
                 {}});
    }
  }
  FinishFutures(completions);
}

void Session::HandleCancelResults(const v1::CancelResults& results) {
  std::shared_ptr<CancelRequest> request;
  std::vector<Completion> completions;
  size_t interrupted = 0;
  {
    absl::MutexLock lock(&mu_);
    // One answer per request, in order; an answer with no request is a broken server's.
    if (!cancels_sent_.empty()) {
      request = std::move(cancels_sent_.front());
      cancels_sent_.pop_front();
    }
    for (const v1::CancelResult& result : results.results()) {
      // The task runs on until its function gives up; its outcome says how it ended.
      if (result.interrupted()) ++interrupted;
      if (!result.cancelled()) continue;
      auto it = pending_.find(result.task_id());
      if (it == pending_.end()) continue;
      // The task's CANCELLED outcome follows, but Cancel() must be able to report CANCELLED as
      // soon as the answer is in; the outcome then finds the future gone from pending_.
      completions.emplace_back(
          it->second, Ending{FutureState::kCancelled,
                             absl::CancelledError(absl::StrCat("task ", result.task_id(),
                                                               " was cancelled before it started")),
                             {}});
    }
  }
  FinishFutures(completions);
  if (request != nullptr) {
    request->interrupted = interrupted;
    request->answered.Notify();
  }
}

void Session::HandlePoolState(const v1::PoolStateChange& change) {
  switch (change.state()) {
    case v1::POOL_STATE_BOOTING:
      pool_state_ = PoolState::kBooting;
      break;
    case v1::POOL_STATE_READY:
      pool_state_ = PoolState::kReady;
      break;
    case v1::POOL_STATE_BROKEN:
      pool_state_ = PoolState::kBroken;
      break;
    case v1::POOL_STATE_DRAINING:
      pool_state_ = PoolState::kDraining;
      break;
    default:
      // Unspecified, or a newer server's state: nothing we can act on.
      return;
  }
  pool_reason_ = change.reason();
  if (change.workers() > 0) workers_ = static_cast<int>(change.workers());
}

void Session::FinishFutures(std::vector<Completion>& completions,
                            const std::vector<uint64_t>& handled, size_t handled_bytes) {
  if (completions.empty() && handled.empty()) return;
  // Outside mu_: waking a future's waiters and running its callbacks must not stall submitters.
  for (auto& [core, ending] : completions) FutureCore::Complete(core, std::move(ending));
  // Only now leave pending_, so that Shutdown(wait) cannot return before these futures are done,
  // and only now acknowledge: the callbacks have run.
  absl::MutexLock lock(&mu_);
  for (const auto& [core, ending] : completions) pending_.erase(core->task_id());
  if (handled.empty()) return;
  if (acks_.empty()) ack_due_ = absl::Now() + kAckDelay;
  acks_.insert(acks_.end(), handled.begin(), handled.end());
  ack_bytes_ += handled_bytes;
}

}  // namespace mpigate::internal
