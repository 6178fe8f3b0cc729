#include "client/internal/session.h"

#include <pthread.h>

#include <algorithm>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/grpc_gateway.h"
#include "client/internal/outcome_decoding.h"
#include "common/access.h"
#include "common/shared_memory.h"

namespace mpigate::internal {
namespace {

// How long Close() waits, after the session closed, for the server to end the stream before
// cancelling it. Only a server that breaks the protocol makes this matter; nothing is lost then.
constexpr absl::Duration kCloseGrace = absl::Seconds(5);

// The largest task a lone submit writes on its caller's thread: within HTTP/2's initial
// flow-control window (64 KiB), so that the write never waits for the service to read. Larger
// ones go to the writer thread, and Submit() still returns at once.
constexpr size_t kCallerWriteMaxBytes = 60 << 10;

// A Session call ended with `status` without `closed`: whether that looks like a broken connection
// (worth resuming) rather than the service ending the session on purpose (OK, or an error about
// the request such as INVALID_ARGUMENT).
bool LooksBroken(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

// What Open() checks before it connects: a message limit too small for any task.
absl::Status CheckOptions(const ExecutorOptions& options) {
  if (options.max_message_bytes <=
      static_cast<int>(SubmitBatcher::kRequestOverhead + SubmitBatcher::kPerTaskOverhead)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_bytes is too small: ", options.max_message_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

Session::Session(const ExecutorOptions& options, std::unique_ptr<GatewayConnection> gateway)
    : max_message_bytes_(options.max_message_bytes),
      client_name_(options.client_name),
      env_(options.env),
      max_running_tasks_(options.max_running_tasks),
      connect_timeout_(options.connect_timeout),
      shared_memory_min_bytes_(options.shared_memory_min_bytes),
      shared_memory_domain_(options.shared_memory_min_bytes > 0 ? SharedMemoryDomain() : ""),
      gateway_(std::move(gateway)),
      opener_(*gateway_) {}

absl::StatusOr<std::shared_ptr<Session>> Session::Open(const ExecutorOptions& options) {
  if (absl::Status status = CheckOptions(options); !status.ok()) return status;
  absl::StatusOr<Connection> connection = ResolveConnection(
      options.endpoint, {options.token, options.tls_ca, options.tls_cert, options.tls_key});
  if (!connection.ok()) return connection.status();
  absl::StatusOr<std::unique_ptr<GrpcGateway>> gateway =
      GrpcGateway::Connect(*connection, options.max_message_bytes, options.connect_timeout);
  if (!gateway.ok()) return gateway.status();
  return Open(options, *std::move(gateway));
}

absl::StatusOr<std::shared_ptr<Session>> Session::Open(const ExecutorOptions& options,
                                                       std::unique_ptr<GatewayConnection> gateway) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex runs the debug-only deadlock
  // detector (a process-wide spinlock and a graph lookup per Lock(), and one graph removal per
  // destroyed Mutex, one per future): it dominated the client's CPU. The setting is process-wide;
  // it only drops a debugging aid, never changes locking semantics.
  static const bool detection_off = [] {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    return true;
  }();
  (void)detection_off;

  if (absl::Status status = CheckOptions(options); !status.ok()) return status;
  // Private constructor: no std::make_shared.
  std::shared_ptr<Session> session(new Session(options, std::move(gateway)));
  if (absl::Status status = session->Connect(options); !status.ok()) return status;
  Session* self = session.get();
  // Named, so that top -H, perf and gdb tell a client's own threads from the application's.
  self->writer_ = std::thread([self] {
    pthread_setname_np(pthread_self(), "mpigate-writer");
    self->WriterLoop();
  });
  self->reader_ = std::thread([self] {
    pthread_setname_np(pthread_self(), "mpigate-reader");
    self->ReaderLoop();
  });
  self->reader_id_ = self->reader_.get_id();
  return session;
}

absl::Status Session::Connect(const ExecutorOptions& options) {
  const absl::Time deadline = connect_timeout_ == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + connect_timeout_;
  v1::SessionRequest open = OpenRequest();
  absl::StatusOr<SessionOpener::OpenCall> call;
  if (options.resume_token.empty()) {
    call = opener_.Open(open, deadline, /*wait_for_ready=*/false);
  } else {
    open.mutable_open()->set_resume_token(options.resume_token);
    open.mutable_open()->mutable_acked_task_ids()->Add(options.acked_task_ids.begin(),
                                                       options.acked_task_ids.end());
    // A resumed session's grace period is not known yet; Connect's own timeout bounds the tries.
    call = opener_.Resume(open, deadline, connect_timeout_);
  }
  if (!call.ok()) return call.status();

  // Before any task can be submitted, and never changed after: read without the lock.
  const v1::SessionOpened& opened = call->opened;
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
  AdoptLocked(*std::move(call));
  return absl::OkStatus();
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

absl::Status Session::Resume() {
  // The service keeps the session for its grace period from when it noticed the break, which is
  // no earlier than now.
  const absl::Time deadline = absl::Now() + resume_grace_;
  v1::SessionRequest open = OpenRequest();
  {
    absl::MutexLock lock(&mu_);
    open.mutable_open()->set_resume_token(resume_token_);
    open.mutable_open()->mutable_acked_task_ids()->Add(acks_.ids().begin(), acks_.ids().end());
  }
  // The writer is idle and only this thread adds to acks_, so they cannot change meanwhile.
  absl::StatusOr<SessionOpener::OpenCall> call = opener_.Resume(open, deadline, connect_timeout_);
  if (!call.ok()) return call.status();
  absl::MutexLock lock(&mu_);
  // The `open` acknowledged them.
  acks_.Clear();
  AdoptLocked(*std::move(call));
  return absl::OkStatus();
}

void Session::AdoptLocked(SessionOpener::OpenCall call) {
  const v1::SessionOpened& opened = call.opened;
  if (opened.workers() > 0) workers_ = static_cast<int>(opened.workers());
  // A service that does not describe its pool opens sessions only once it is ready.
  if (opened.has_pool()) HandlePoolState(opened.pool());
  if (opened.resumed()) {
    submits_.RequeueAfter(opened.last_task_id());
    // Unanswered cancels may never have arrived; asking again is harmless.
    cancels_queued_.insert(cancels_queued_.begin(), cancels_sent_.begin(), cancels_sent_.end());
    cancels_sent_.clear();
    shutdown_taken_ = false;
  }
  stream_ = std::move(call.stream);
  current_stream_ = stream_.get();
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
      opener_.Stop();
      if (current_stream_ != nullptr) current_stream_->Cancel();
    }
  }
  writer_.join();
  reader_.join();
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
  // An empty payload is the field's default: setting it would allocate a string for nothing.
  if (!payload.empty()) task.spec.set_payload(std::move(payload));
}

Future Session::Submit(absl::string_view function, std::string payload,
                       const SubmitOptions& options) {
  OutgoingTask task = SubmitBatcher::NewTask(function, options);
  SetPayload(task, std::move(payload));
  return Enqueue(std::move(task));
}

Future Session::SubmitChunk(absl::string_view function, std::vector<std::string> items,
                            const SubmitOptions& options) {
  OutgoingTask task = SubmitBatcher::NewTask(function, options);
  task.spec.mutable_items()->Reserve(static_cast<int>(items.size()));
  for (std::string& item : items) task.spec.add_items(std::move(item));
  return Enqueue(std::move(task));
}

Future Session::SubmitRange(absl::string_view function, std::string payload,
                            const v1::RangeSpec& range, const SubmitOptions& options) {
  OutgoingTask task = SubmitBatcher::NewTask(function, options);
  SetPayload(task, std::move(payload));
  *task.spec.mutable_range() = range;
  return Enqueue(std::move(task));
}

Future Session::SubmitBroadcast(absl::string_view function, std::string payload,
                                const SubmitOptions& options) {
  OutgoingTask task = SubmitBatcher::NewTask(function, options);
  SetPayload(task, std::move(payload));
  task.spec.mutable_options()->set_broadcast(true);
  return Enqueue(std::move(task));
}

Future Session::Enqueue(OutgoingTask task) {
  task.wire_bytes = SubmitBatcher::WireBytes(task.spec);
  // gRPC would fail the whole stream on an oversized message, taking every other task with it;
  // fail just this one. It never gets an id: the service never hears of it.
  if (!SubmitBatcher::Fits(task.wire_bytes, send_limit_)) {
    return FutureCore::Failed(
        0, absl::ResourceExhaustedError(absl::StrCat(
               "the task is ", task.wire_bytes, " bytes encoded, above the message limit of ",
               send_limit_,
               " bytes (the smaller of ExecutorOptions.max_message_bytes and the service's "
               "--max_message_mb)")));
  }

  std::shared_ptr<FutureCore> core;
  bool write_here = false;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_requested_ || stream_ended_) {
      // The service never hears of the task: its input is still ours to release.
      SubmitBatcher::ReleaseInput(task.spec);
      return FutureCore::Failed(
          0, shutdown_requested_ ? absl::FailedPreconditionError("cannot submit after shutdown")
                                 : end_status_);
    }
    // Under mu_, so that ids increase in the order specs are queued and sent (see the invariants).
    const uint64_t task_id = next_task_id_++;
    task.spec.set_task_id(task_id);
    const size_t wire_bytes = task.wire_bytes;
    core = std::make_shared<FutureCore>(task_id, weak_from_this());
    // Registered before the writer can see the spec: the outcome may arrive before we return.
    pending_.emplace(task_id, core);
    submits_.Queue(std::move(task));
    // Alone (nothing else of the session in flight), a small task is written by its caller: a
    // round trip then waits for no other thread, and the write fits the stream's flow-control
    // window, so it does not wait for the service. Otherwise unlocking wakes the writer thread,
    // whose Await condition becomes true, and which catches up with a burst in few messages. The
    // reader thread (a done callback's submit) never writes: it must keep reading.
    write_here = pending_.size() == 1 && wire_bytes <= kCallerWriteMaxBytes &&
                 std::this_thread::get_id() != reader_id_ && TakeWriterLocked(/*acks_due=*/false);
  }
  if (write_here) WriteAsWriter(/*acks_due=*/false);
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
  return gateway_->ListFunctions(timeout);
}

bool Session::WriterHasWorkLocked() const {
  if (stream_ended_ || closed_) return true;
  // While a caller writes, what it leaves is the writer thread's once it is done.
  if (writer_busy_) return false;
  // Acknowledgements queued since the writer began to wait: it waits again, until their deadline.
  return SendableLocked() || (connected_ && !acks_.empty() && acks_.due() < writer_wake_);
}

bool Session::SendableLocked() const {
  return connected_ && (submits_.has_queued() || !cancels_queued_.empty() ||
                        (shutdown_requested_ && !shutdown_taken_) || acks_.Full());
}

bool Session::TakeWriterLocked(bool acks_due) {
  if (writer_busy_ || stream_ended_ || closed_ || !connected_) return false;
  if (!SendableLocked() && !(acks_due && !acks_.empty())) return false;
  writer_busy_ = true;
  return true;
}

bool Session::DrainedLocked() const {
  return pending_.empty() && completing_ == 0 && (closed_ || stream_ended_);
}

bool Session::BootedLocked() const { return pool_state_ != PoolState::kBooting || stream_ended_; }

void Session::WriterLoop() {
  for (;;) {
    bool acks_due = false;
    {
      absl::MutexLock lock(&mu_);
      const absl::Condition has_work(this, &Session::WriterHasWorkLocked);
      // Session over: the reader fails pending futures and releases cancel waiters. Closed: no
      // task is pending, so there is nothing left to send. Acknowledgements that are not due by
      // number or size wait until their delay has passed.
      while (!stream_ended_ && !closed_ && !TakeWriterLocked(acks_due)) {
        writer_wake_ =
            connected_ && !writer_busy_ && !acks_.empty() ? acks_.due() : absl::InfiniteFuture();
        acks_due = !mu_.AwaitWithDeadline(has_work, writer_wake_);
      }
      writer_wake_ = absl::InfiniteFuture();
      if (stream_ended_ || closed_) return;
    }
    WriteAsWriter(acks_due);
  }
}

void Session::WriteAsWriter(bool acks_due) {
  std::vector<OutgoingTask> batch;
  std::vector<std::shared_ptr<CancelRequest>> cancels;
  std::vector<uint64_t> acks;
  v1::SessionRequest request;
  for (;;) {
    bool send_shutdown = false;
    SessionStream* stream = nullptr;
    {
      absl::MutexLock lock(&mu_);
      const bool acks_now = !acks_.empty() && (acks_due || acks_.DueAt(absl::Now()));
      if (stream_ended_ || closed_ || !connected_ || (!SendableLocked() && !acks_now)) {
        // In the same critical section as the look: work queued after it finds no writer, and
        // its caller writes it or the writer thread's condition wakes it.
        writer_busy_ = false;
        return;
      }
      acks_due = false;
      // Take everything queued in one swap. Specs go out first: every cancel and the shutdown
      // were requested after the tasks they concern were queued.
      submits_.TakeQueued(batch);
      cancels.swap(cancels_queued_);
      // Before the write, so that the answer, however quick, finds its request.
      cancels_sent_.insert(cancels_sent_.end(), cancels.begin(), cancels.end());
      if (shutdown_requested_ && !shutdown_taken_) {
        shutdown_taken_ = true;
        send_shutdown = true;
      }
      if (acks_now) acks_.TakeInto(acks);
      stream = current_stream_;
    }
    // A failed write means the call is over: the reader's Read fails too, and it resumes the
    // session (which sends again what this stream may have lost) or ends it.
    bool ok = SubmitBatcher::Write(*stream, batch, send_limit_);
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
    submits_.KeepSent(batch);
    if (!ok) {
      // Stops writing to a broken stream until the reader has a new one.
      connected_ = false;
      writer_busy_ = false;
      return;
    }
  }
}

void Session::ReaderLoop() {
  v1::SessionEvent event;
  absl::Status lost;
  for (;;) {
    while (stream_->Read(&event)) {
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
    const absl::Status finish = EndCall();
    if (!ShouldResume(finish)) {
      lost = absl::UnavailableError(
          absl::StrCat("connection to the mpigate service lost: ",
                       finish.ok() ? "the service ended the session" : finish.message()));
      break;
    }
    if (absl::Status resumed = Resume(); !resumed.ok()) {
      lost = absl::UnavailableError(
          absl::StrCat("connection to the mpigate service lost (", finish.message(),
                       ") and the session could not be resumed within its grace period of ",
                       absl::FormatDuration(resume_grace_), ": ", resumed.message()));
      break;
    }
  }
  EndSession(lost);
}

void Session::EndSession(const absl::Status& lost) {
  // stream_ended_ is set in the same critical section that takes the lists, so no Submit() or
  // Cancel() can add to them after.
  std::vector<Completion> orphans;
  std::vector<std::shared_ptr<CancelRequest>> cancels;
  {
    absl::MutexLock lock(&mu_);
    stream_ended_ = true;
    end_status_ = lost;
    orphans.reserve(pending_.size());
    for (auto& [task_id, core] : pending_) {
      orphans.emplace_back(std::move(core), Ending{FutureState::kFinished, lost, {}});
    }
    completing_ += pending_.size();
    pending_.clear();
    cancels.swap(cancels_queued_);
    cancels.insert(cancels.end(), cancels_sent_.begin(), cancels_sent_.end());
    cancels_sent_.clear();
    // Inputs the service may never have had: nothing will run them now.
    submits_.DropAll();
  }
  FinishFutures(orphans);
  for (const std::shared_ptr<CancelRequest>& cancel : cancels) cancel->answered.Notify();
}

absl::Status Session::EndCall() {
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    // A write to a call that is over fails at once, so this is short.
    mu_.Await(absl::Condition(this, &Session::WriterIdleLocked));
    current_stream_ = nullptr;
  }
  return stream_->Finish();
}

bool Session::ShouldResume(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  // A draining service is going away with its sessions: there is nothing to resume.
  return !closed_ && !opener_.stopped() && pool_state_ != PoolState::kDraining &&
         !resume_token_.empty() && resume_grace_ > absl::ZeroDuration() && LooksBroken(status);
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
    // Progress before the outcomes: a task's last report reaches its future and callbacks also
    // when the task ends in the same update.
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
      completions.emplace_back(TakePendingLocked(it), EndingOf(outcome));
    }
    // Starts after the outcomes: a task that ended in this update has no use for its start, and
    // no longer has a future in pending_ to find for it.
    for (const uint64_t task_id : updates.started()) {
      highest = std::max(highest, task_id);
      auto it = pending_.find(task_id);
      if (it != pending_.end()) started.push_back(it->second);
    }
    submits_.ReceivedUpTo(highest);
  }
  for (auto& [index, shared] : shared_results) {
    ReadSharedResult(shared, completions[index].second);
  }
  // Starts first: a start is reported no later than the task's progress, and progress before the
  // task's end.
  for (const std::shared_ptr<FutureCore>& core : started) core->MarkRunning();
  for (const auto& [core, report] : progress) {
    // Also one whose start was skipped because it ends in this update.
    core->MarkRunning();
    FutureCore::ReportProgress(core, report);
  }
  FinishFutures(completions, handled, handled_bytes);
  // The reader of a shared result releases its object (the service only releases those it
  // drops); after the futures, since freeing a large object's pages takes a while.
  for (const auto& [index, shared] : shared_results) ReleaseSharedObject(shared.name());
  for (const std::string& name : unread_shared) ReleaseSharedObject(name);
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
    submits_.ReceivedUpTo(highest);
    for (const v1::TaskRejection& rejection : rejected.rejections()) {
      auto it = pending_.find(rejection.task_id());
      if (it == pending_.end()) continue;
      completions.emplace_back(TakePendingLocked(it), EndingOf(rejection));
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
      completions.emplace_back(TakePendingLocked(it), CancelledBeforeStart(result.task_id()));
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

std::shared_ptr<FutureCore> Session::TakePendingLocked(PendingFutures::iterator it) {
  std::shared_ptr<FutureCore> core = std::move(it->second);
  pending_.erase(it);
  ++completing_;
  return core;
}

void Session::FinishFutures(std::vector<Completion>& completions,
                            const std::vector<uint64_t>& handled, size_t handled_bytes) {
  if (completions.empty() && handled.empty()) return;
  // Outside mu_: waking a future's waiters and running its callbacks must not stall submitters.
  for (auto& [core, ending] : completions) FutureCore::Complete(core, std::move(ending));
  // Only now count them done, so that Shutdown(wait) cannot return before these futures are, and
  // only now acknowledge: the callbacks have run.
  absl::MutexLock lock(&mu_);
  completing_ -= completions.size();
  if (!handled.empty()) acks_.Add(handled, handled_bytes, absl::Now());
}

}  // namespace mpigate::internal
