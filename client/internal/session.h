// Session: the machinery behind mpigate::Executor. One Session is one Gateway.Session gRPC stream.
//
// Threads:
// - Callers (any number of threads) call Submit(), Cancel(), Shutdown() and Bootup(). Submit()
//   registers the task's future and queues its TaskSpec; it never touches the network. Cancel()
//   queues a request and may wait for its answer. ListFunctions() is a unary call of its own on
//   the session's channel, made on the caller's thread.
// - The writer thread is the only one that calls stream_->Write(). It takes every queued spec at
//   once and sends them as few `submit` messages as the batch size allows, so a burst of
//   submissions costs a handful of messages rather than one per task; then the queued `cancel`
//   requests, then `shutdown`. Specs go first, so a cancel never overtakes the task it names. It
//   keeps serving cancel requests after `shutdown`, until the session closes.
// - The reader thread is the only one that calls stream_->Read() and Finish(). It marks futures
//   RUNNING, passes on their progress and completes them as updates, rejections and cancel
//   answers arrive (running their progress and done callbacks), tracks the pool's state, and, when
//   the stream ends, fails whatever is still pending with UNAVAILABLE and releases every cancel
//   waiter.
//
// Invariants:
// - A future is in pending_ from before its spec can be sent until after it is completed, so a
//   completion that races ahead of Submit() returning still finds it, and Shutdown(wait) returning
//   (pending_ empty) means every future is done.
// - Once stream_ended_ is set, nothing is added to pending_ or to the cancel queues any more: the
//   reader's final sweep runs under mu_ in the same critical section, so no future and no cancel
//   waiter can be left behind.
// - The service answers cancel requests in the order it got them; the writer moves each request
//   to cancels_sent_ before writing it, so the reader pairs every answer with its request.
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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
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
#include "client/executor.h"
#include "client/internal/future_core.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

class Session : public std::enable_shared_from_this<Session> {
 public:
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

 private:
  // One queued task and its encoded size inside a SubmitTasks message.
  struct OutgoingTask {
    v1::TaskSpec spec;
    size_t wire_bytes = 0;
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

  // Connects and performs the open handshake on the calling thread; no threads run yet.
  absl::Status Handshake(const std::string& target, absl::Duration connect_timeout);

  // A task for `function` with `options` applied; the caller adds its input.
  static OutgoingTask NewTask(absl::string_view function, const SubmitOptions& options);
  // Registers and queues `task` (whose spec has everything but the id).
  Future Enqueue(OutgoingTask task);

  void WriterLoop();
  void ReaderLoop();

  // Writer thread: sends `batch` as one or more `submit` messages. False if the stream broke.
  bool SendTasks(std::vector<OutgoingTask>& batch);

  // Reader thread: handles one event of each kind.
  void HandleUpdates(v1::TaskUpdates& updates);
  void HandleRejected(const v1::TaskRejections& rejected);
  void HandleCancelResults(const v1::CancelResults& results);
  void HandlePoolState(const v1::PoolStateChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reader thread: completes `completions` (already looked up under mu_) and then drops them from
  // pending_. Completion happens before removal; see the invariants above.
  void FinishFutures(std::vector<Completion>& completions);

  bool WriterHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DrainedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BootedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StreamEndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ended_; }

  // Set before the threads start, constant afterwards.
  const int max_message_bytes_;
  const std::string client_name_;
  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  // Must outlive stream_ (declared before it, so destroyed after it).
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream_;
  std::thread::id reader_id_;

  // Task ids are the session's own: unique for its lifetime, never 0.
  std::atomic<uint64_t> next_task_id_{1};

  mutable absl::Mutex mu_;
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
  // The reader saw the stream end; end_status_ says why (for failing later submits).
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);

  // Started by Open(), joined by Close().
  std::thread writer_;
  std::thread reader_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SESSION_H_
