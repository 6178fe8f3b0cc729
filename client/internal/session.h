// Session: the machinery behind mpigate::Executor. One Session is one session of the service:
// one Session call (session_stream.h) at a time, resumed on a new call when the old one breaks.
// Its collaborators: SessionOpener (opening and resuming calls), SubmitBatcher (specs on their
// way), AckBatcher (acknowledgements on theirs) and outcome_decoding.h (what an answer means).
//
// Threads:
// - Callers (any number of threads) call Submit*(), Cancel(), Shutdown(), Bootup() and the
//   accessors. Submit*() registers the task's future and queues its spec. A caller that submits
//   while nothing else of the session is in flight, and finds no writer at work, becomes the
//   writer (flat combining, as the Python client's session does): it writes its spec and
//   whatever is queued meanwhile, and stops when nothing is left; so a submit may wait for the
//   transport to take its bytes, never for an answer. Cancel() queues a request and may wait for
//   its answer. ListFunctions() is a unary call of its own, made on the caller's thread.
// - The writer thread writes what callers leave to it: specs submitted while others are in
//   flight (a burst then goes out in few messages as it catches up: each caller writing its own
//   would make one message and one write per task), cancels, `shutdown`, the acknowledgements
//   once due, and what a resumed stream must get again.
// - One thread at a time is the writer (writer_busy_), and it takes everything queued at once:
//   every spec (as few `submit` messages as the size limit allows), then the `cancel` requests,
//   then `shutdown`, then the acknowledgements that are due. Specs go first, so a cancel never
//   overtakes the task it names.
// - The reader thread is the only one that reads from a stream, finishes it and opens the next.
//   It marks futures RUNNING, passes on their progress and completes them (running their
//   callbacks), then queues the acknowledgements of the outcomes it handled. When a stream breaks
//   (not after `closed`, nor when the service ended it on purpose or drains) it resumes the
//   session with its resume token until the service's grace period has passed; when the session
//   is over for good it fails whatever is pending with UNAVAILABLE and releases every cancel
//   waiter.
//
// Invariants:
// - A future is in pending_ from before its spec can be sent until the reader takes it to complete
//   it (counted in completing_ until it is complete), so a completion that races ahead of Submit()
//   returning still finds it, and Shutdown(wait) returning means every future is done; an outcome
//   sent again after a resume finds it gone.
// - Task ids are taken under mu_ as specs are queued, so they increase in sending order and
//   SessionOpened.last_task_id says exactly which specs the service has.
// - Once stream_ended_ is set nothing is added to pending_ or to the cancel queues: the reader's
//   final sweep runs in the same critical section.
// - The service answers cancels in order; the writer moves each request to cancels_sent_ before
//   writing it, so the reader pairs every answer with its request. A resumed stream gets the
//   unanswered ones again, first.
// - The writer (whichever thread it is) touches a stream only while connected_ (writer_busy_
//   while it writes outside mu_); the reader replaces the stream only once neither holds.
//
// Ownership: an Executor owns its Session through a shared_ptr and calls Close() when destroyed;
// futures hold weak_ptrs, so a Cancel() racing with the executor's end never touches freed memory.
#ifndef MPIGATE_CLIENT_INTERNAL_SESSION_H_
#define MPIGATE_CLIENT_INTERNAL_SESSION_H_

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
#include "client/internal/ack_batcher.h"
#include "client/internal/future_core.h"
#include "client/internal/session_opener.h"
#include "client/internal/session_stream.h"
#include "client/internal/submit_batcher.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

class Session : public std::enable_shared_from_this<Session> {
 public:
  // Resolves the endpoint, connects, opens the session and starts the writer and reader threads.
  static absl::StatusOr<std::shared_ptr<Session>> Open(const ExecutorOptions& options);
  // The same on `gateway` (options.endpoint and the access options unused): a fake in tests.
  static absl::StatusOr<std::shared_ptr<Session>> Open(const ExecutorOptions& options,
                                                       std::unique_ptr<GatewayConnection> gateway);

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

  Session(const ExecutorOptions& options, std::unique_ptr<GatewayConnection> gateway);

  // Opens (or, with a resume token, resumes) the session and makes the futures of a resumed
  // session's tasks, on the calling thread; no threads run yet.
  absl::Status Connect(const ExecutorOptions& options);
  // An `open` for this client, without a resume token.
  v1::SessionRequest OpenRequest() const;
  // Makes `call` the current one after its `opened`: for a resumed session, queues again the
  // specs the service may lack, the unanswered cancels and a pending shutdown.
  void AdoptLocked(SessionOpener::OpenCall call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: after a Read failed, waits for the writer to leave the stream and finishes it.
  absl::Status EndCall();
  // Reader thread: whether the session should be resumed after its stream ended with `status`.
  bool ShouldResume(const absl::Status& status);
  // Reader thread: resumes the session on a new call, which it adopts, within its grace period.
  absl::Status Resume();

  // Sets `task`'s input: in a shared memory object where the session may use them and the payload
  // is large enough (and /dev/shm has room), in the spec otherwise.
  void SetPayload(OutgoingTask& task, std::string payload) const;
  // Registers and queues `task` (whose spec has everything but the id).
  Future Enqueue(OutgoingTask task);

  // The writer thread: waits until there is something for it to write and nobody else writes,
  // then writes (WriteAsWriter), until the session is over.
  void WriterLoop();
  // As the writer (TakeWriterLocked returned true): writes what is queued, again and again, until
  // nothing is (or the stream broke); then is the writer no longer. `acks_due`: the
  // acknowledgements queued have waited their delay.
  void WriteAsWriter(bool acks_due);
  void ReaderLoop();

  // Reader thread: handles one event of each kind.
  void HandleUpdates(v1::TaskUpdates& updates);
  void HandleRejected(const v1::TaskRejections& rejected);
  void HandleCancelResults(const v1::CancelResults& results);
  void HandlePoolState(const v1::PoolStateChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: takes the future at `it` out of pending_ to complete it (FinishFutures).
  using PendingFutures = absl::flat_hash_map<uint64_t, std::shared_ptr<FutureCore>>;
  std::shared_ptr<FutureCore> TakePendingLocked(PendingFutures::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: completes `completions` (taken out of pending_ under mu_), then counts them
  // off completing_ and queues the acknowledgement of `handled` outcomes (ids and encoded bytes).
  // Completion happens before acknowledgement; see the invariants above.
  void FinishFutures(std::vector<Completion>& completions,
                     const std::vector<uint64_t>& handled = {}, size_t handled_bytes = 0);
  // Reader thread: fails what is pending with `lost` and releases every cancel waiter.
  void EndSession(const absl::Status& lost);

  bool WriterHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // There is something to write now (acknowledgements only once due by number or size).
  bool SendableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes the calling thread the writer (writer_busy_) if nobody is, the stream is adopted and
  // there is something to write (or acknowledgements, when `acks_due`).
  bool TakeWriterLocked(bool acks_due) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WriterIdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writer_busy_; }
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
  const std::unique_ptr<GatewayConnection> gateway_;
  // Stop()ped by Close() when it gives up waiting: no more resuming.
  SessionOpener opener_;
  std::thread::id reader_id_;
  // SessionOpened.resume_token and resume_grace_ms; an empty token or a zero grace period: the
  // service does not resume sessions, and a broken stream ends this one.
  std::string resume_token_;
  absl::Duration resume_grace_ = absl::ZeroDuration();
  std::vector<Future> reattached_;

  // The current call's stream. Read by the reader thread without mu_; replaced only by it (and by
  // Open() before the threads start), under mu_, while the writer is idle.
  std::unique_ptr<SessionStream> stream_;

  mutable absl::Mutex mu_;
  // stream_, for the writer while connected_ and for Close(); null between calls.
  SessionStream* current_stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_busy_ ABSL_GUARDED_BY(mu_) = false;
  // Task ids are the session's own: unique for its lifetime, never 0, taken in queueing order.
  uint64_t next_task_id_ ABSL_GUARDED_BY(mu_) = 1;
  SubmitBatcher submits_ ABSL_GUARDED_BY(mu_);
  // Outcomes handled (their futures complete and callbacks run, or already ended by a cancel
  // answer) and not yet acknowledged.
  AckBatcher acks_ ABSL_GUARDED_BY(mu_);
  // The deadline the writer waits until (for acks_.due()), InfiniteFuture when none.
  absl::Time writer_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Futures whose tasks have not ended, by task id.
  PendingFutures pending_ ABSL_GUARDED_BY(mu_);
  // Futures the reader has taken out of pending_ and not yet completed.
  size_t completing_ ABSL_GUARDED_BY(mu_) = 0;
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
