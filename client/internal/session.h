// Session: the machinery behind mpigate::Executor. One Session is one session of the service:
// one Gateway.Session gRPC stream at a time, resumed on a new stream when the old one breaks.
//
// Threads:
// - Callers (any number of threads) call Submit(), Cancel(), Shutdown() and Bootup(). Submit()
//   registers the task's future and queues its TaskSpec; it never touches the network. Cancel()
//   queues a request and may wait for its answer. ListFunctions() is a unary call of its own on
//   the session's channel, made on the caller's thread.
// - The writer thread is the only one that writes to a stream. It takes every queued spec at
//   once and sends them as few `submit` messages as the batch size allows, so a burst of
//   submissions costs a handful of messages rather than one per task; then the queued `cancel`
//   requests, then `shutdown`, then the acknowledgements that are due (see acks_). Specs go first,
//   so a cancel never overtakes the task it names. It keeps serving cancel requests after
//   `shutdown`, until the session closes.
// - The reader thread is the only one that reads from a stream, finishes it, and opens the next.
//   It marks futures RUNNING, passes on their progress and completes them as updates, rejections
//   and cancel answers arrive (running their progress and done callbacks), then queues the
//   acknowledgements of the outcomes it handled, and tracks the pool's state. When a stream
//   breaks (not after `closed`, nor when the service ended it on purpose), it resumes the session
//   on a new stream with its resume token, with backoff, until the service's grace period has
//   passed; when the session is over for good it fails whatever is still pending with
//   UNAVAILABLE and releases every cancel waiter.
//
// Invariants:
// - A future is in pending_ from before its spec can be sent until after it is completed, so a
//   completion that races ahead of Submit() returning still finds it, and Shutdown(wait) returning
//   (pending_ empty) means every future is done. A future completes only while it is in pending_,
//   and leaves it once completed, so an outcome sent again after a resume never completes it twice.
// - Task ids are taken under mu_ as specs are queued, so they increase in the order specs are
//   sent; the service's SessionOpened.last_task_id then says exactly which specs it has.
// - A sent spec stays in sent_ until the service evidently has it (an event names a task id at
//   least as high: the stream is ordered), so a resumed session gets again every spec it may lack.
// - Once stream_ended_ is set, nothing is added to pending_ or to the cancel queues any more: the
//   reader's final sweep runs under mu_ in the same critical section, so no future and no cancel
//   waiter can be left behind.
// - The service answers cancel requests in the order it got them; the writer moves each request
//   to cancels_sent_ before writing it, so the reader pairs every answer with its request. A
//   resumed stream gets the unanswered ones again, first.
// - The writer touches a stream only while connected_ (writer_busy_ while it writes outside mu_);
//   the reader replaces the stream only once neither holds.
//
// Ownership: an Executor owns its Session through a shared_ptr and calls Close() when destroyed;
// futures hold weak_ptrs, so a Cancel() racing with the executor's end never touches freed memory.
//
// Thread-safety: all public methods may be called from any thread, except Close() (the owner's).
#ifndef MPIGATE_CLIENT_INTERNAL_SESSION_H_
#define MPIGATE_CLIENT_INTERNAL_SESSION_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "client/internal/future_core.h"
#include "common/access.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

class Session : public std::enable_shared_from_this<Session> {
 public:
  using StreamType = grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>;

  // Resolves the endpoint, connects, opens the session and starts the writer and reader threads.
  static absl::StatusOr<std::shared_ptr<Session>> Open(const ExecutorOptions& options);

  // Close() must have run (the owning Executor calls it) or Open() must have failed.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Submits `function(payload)`.
  Future Submit(absl::string_view function, std::string payload, const SubmitOptions& options);
  // Submits one task that runs `function` on each of `items`; its future's ending carries one
  // result per item (FutureCore::TakeItems).
  Future SubmitChunk(absl::string_view function, std::vector<std::string> items,
                     const SubmitOptions& options);
  // Submits one batch of a seeded range map: `function(payload)` once per item of `range`; its
  // future's ending carries one result per item, as a chunk's.
  Future SubmitRange(absl::string_view function, std::string payload, const v1::RangeSpec& range,
                     const SubmitOptions& options);
  // Submits `function(payload)` to run once on every worker; its future's ending carries one
  // result per worker, as a chunk's.
  Future SubmitBroadcast(absl::string_view function, std::string payload,
                         const SubmitOptions& options);

  // Asks the service to cancel `task_ids` (those not yet started) and, as `mode` says, to
  // interrupt or kill those that are running. With `wait`, blocks until the answer arrived and
  // the cancelled futures are CANCELLED, and returns how many running tasks were interrupted or
  // killed; never waits on the reader thread. Returns 0 when it does not wait.
  size_t Cancel(std::vector<uint64_t> task_ids, bool wait, CancelMode mode);

  void Shutdown(bool wait, bool cancel_futures);
  absl::Status Bootup(bool wait);
  PoolState pool_state() const;
  int workers() const;
  absl::StatusOr<std::vector<FunctionInfo>> ListFunctions(absl::Duration timeout) const;

  // Shutdown(wait=true), then ends the stream and joins both threads. Called once, by the owner.
  void Close();

  // The secret that resumes this session (see ExecutorOptions::resume_token).
  const std::string& resume_token() const { return resume_token_; }
  // Futures of the tasks of a session resumed by Open() (ExecutorOptions::resume_token).
  const std::vector<Future>& reattached() const { return reattached_; }

 private:
  // One queued task and its encoded size inside a SubmitTasks message.
  struct OutgoingTask {
    v1::TaskSpec spec;
    size_t wire_bytes = 0;
  };

  // Specs written together, kept until the service evidently has the last of them.
  struct SentBatch {
    uint64_t last_task_id = 0;
    std::vector<OutgoingTask> tasks;
  };

  // One Session call: its context must outlive its stream (declared first, destroyed last).
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream;
  };

  // One `cancel` request; `answered` is notified once the service answered (and the cancelled
  // futures are complete) or the stream ended.
  struct CancelRequest {
    std::vector<uint64_t> task_ids;
    CancelMode mode = CancelMode::kPendingOnly;
    // How many running tasks the answer says were interrupted. Written by the reader thread
    // before it notifies `answered`, read only after.
    size_t interrupted = 0;
    absl::Notification answered;
  };

  using Completion = std::pair<std::shared_ptr<FutureCore>, Ending>;

  explicit Session(const ExecutorOptions& options);

  // Connects, opens (or, with a resume token, resumes) the session and makes the futures of a
  // resumed session's tasks, on the calling thread; no threads run yet.
  absl::Status Connect(const Connection& connection, const ExecutorOptions& options);
  // An `open` for this client, without a resume token.
  v1::SessionRequest OpenRequest() const;
  // Starts a Session call with `open` and waits for `opened` until `deadline`. With
  // `wait_for_ready`, waits for the channel to (re)connect within that time.
  absl::StatusOr<Call> OpenCall(const v1::SessionRequest& open, absl::Time deadline,
                                bool wait_for_ready, v1::SessionOpened& opened);
  // Resumes the session on a new call, retrying what may pass (the service unreachable, or not
  // yet aware that the old stream is gone) until `deadline`; acknowledges acks_ on the way. The
  // writer must be idle.
  absl::StatusOr<Call> ResumeCall(absl::Time deadline, v1::SessionOpened& opened)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes `call` the current one after `opened`: for a resumed stream, queues again the specs the
  // service may lack (ids above last_task_id), the unanswered cancels and a pending shutdown.
  void AdoptLocked(Call call, const v1::SessionOpened& opened) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: after a Read failed, waits for the writer to leave the stream and finishes it.
  grpc::Status EndCall();
  // Reader thread: whether the session should be resumed after its stream ended with `status`.
  bool ShouldResume(const grpc::Status& status);

  // A task for `function` with `options` applied; the caller adds its input.
  static OutgoingTask NewTask(absl::string_view function, const SubmitOptions& options);
  // Sets `task`'s input: in a shared memory object where the session may use them and the payload
  // is large enough (or /dev/shm is full), in the spec otherwise.
  void SetPayload(OutgoingTask& task, std::string payload) const;
  // Registers and queues `task` (whose spec has everything but the id).
  Future Enqueue(OutgoingTask task);

  void WriterLoop();
  void ReaderLoop();

  // Writer thread: sends `batch` as one or more `submit` messages. False if the stream broke.
  // The specs are moved back into `batch` as they are written, for sent_.
  bool SendTasks(StreamType* stream, std::vector<OutgoingTask>& batch);

  // Reader thread: handles one event of each kind.
  void HandleUpdates(v1::TaskUpdates& updates);
  void HandleRejected(const v1::TaskRejections& rejected);
  void HandleCancelResults(const v1::CancelResults& results);
  void HandlePoolState(const v1::PoolStateChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: completes `completions` (already looked up under mu_), then drops them from
  // pending_ and queues the acknowledgement of `handled` outcomes (ids and encoded bytes).
  // Completion happens before removal and acknowledgement; see the invariants above.
  void FinishFutures(std::vector<Completion>& completions,
                     const std::vector<uint64_t>& handled = {}, size_t handled_bytes = 0);
  // The service evidently has every spec up to `task_id`: sent_ lets go of them.
  void ReceivedUpToLocked(uint64_t task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool WriterHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // There is something to write now (acknowledgements only once due by number or size).
  bool SendableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AcksDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WriterIdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writer_busy_; }
  bool ClosingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closing_; }
  bool DrainedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BootedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StreamEndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ended_; }

  // Set before the threads start, constant afterwards.
  const int max_message_bytes_;
  // The largest message this session sends: the smaller of max_message_bytes_ and the service's
  // (SessionOpened.max_message_bytes). Set by Connect().
  size_t send_limit_ = 0;
  const std::string client_name_;
  // ExecutorOptions::env, sent with every `open`.
  const std::map<std::string, std::string> env_;
  // ExecutorOptions::max_running_tasks, sent with every `open` (the service keeps a resumed
  // session's own).
  const uint32_t max_running_tasks_;
  const absl::Duration connect_timeout_;
  // ExecutorOptions::shared_memory_min_bytes, and this process's shared memory domain (empty when
  // it uses none).
  const uint64_t shared_memory_min_bytes_;
  const std::string shared_memory_domain_;
  // SessionOpened.shared_memory_prefix: empty unless the session may use shared memory. Set by
  // Connect().
  std::string shared_memory_prefix_;
  std::string target_;
  // The bearer token every call carries (common/access.h); empty: none. Set by Connect().
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  std::thread::id reader_id_;
  // SessionOpened.resume_token and resume_grace_ms; an empty token or a zero grace period: the
  // service does not resume sessions, and a broken stream ends this one.
  std::string resume_token_;
  absl::Duration resume_grace_ = absl::ZeroDuration();
  std::vector<Future> reattached_;

  // The current call. Read by the reader thread without mu_; replaced only by it (and by Open()
  // before the threads start), under mu_, while the writer is idle.
  Call call_;

  mutable absl::Mutex mu_;
  // The stream of call_, for the writer while connected_; null between calls.
  StreamType* writer_stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::ClientContext* call_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_busy_ ABSL_GUARDED_BY(mu_) = false;
  // Close() gave up waiting: no more resuming.
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // Task ids are the session's own: unique for its lifetime, never 0, taken in queueing order.
  uint64_t next_task_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Specs written to a stream that the service may not have yet, in id order; see the invariants.
  std::deque<SentBatch> sent_ ABSL_GUARDED_BY(mu_);
  // Outcomes handled (their futures complete and callbacks run, or already ended by a cancel
  // answer) and not yet acknowledged to the service, which holds them until then; with their
  // encoded bytes. The writer sends them once there are many, or they hold many bytes, or the
  // oldest has waited kAckDelay (ack_due_): never one message per task.
  std::vector<uint64_t> acks_ ABSL_GUARDED_BY(mu_);
  size_t ack_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time ack_due_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The deadline the writer waits until (for ack_due_), InfiniteFuture when none.
  absl::Time writer_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Futures whose tasks have not ended, by task id.
  absl::flat_hash_map<uint64_t, std::shared_ptr<FutureCore>> pending_ ABSL_GUARDED_BY(mu_);
  // Specs submitted but not yet taken by the writer.
  std::vector<OutgoingTask> outgoing_ ABSL_GUARDED_BY(mu_);
  // Cancel requests not yet taken by the writer, then those sent and not yet answered.
  std::vector<std::shared_ptr<CancelRequest>> cancels_queued_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<CancelRequest>> cancels_sent_ ABSL_GUARDED_BY(mu_);
  // Shutdown() was called: submits fail, and the writer sends `shutdown` once.
  bool shutdown_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_taken_ ABSL_GUARDED_BY(mu_) = false;
  // The pool as the service last described it.
  PoolState pool_state_ ABSL_GUARDED_BY(mu_) = PoolState::kReady;
  std::string pool_reason_ ABSL_GUARDED_BY(mu_);
  int workers_ ABSL_GUARDED_BY(mu_) = 0;
  // The server sent `closed`: every accepted task has its outcome.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The session is over (its last stream ended and it will not be resumed); end_status_ says why
  // (for failing later submits).
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);

  // Started by Open(), joined by Close().
  std::thread writer_;
  std::thread reader_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SESSION_H_
