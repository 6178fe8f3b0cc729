// Session: the machinery behind mpigate::Executor. One Session is one Gateway.Session gRPC stream.
//
// Threads:
// - Callers (any number of threads) call Submit() and Shutdown(). Submit() registers the task's
//   future and queues its TaskSpec; it never touches the network.
// - The writer thread is the only one that calls stream_->Write() and WritesDone(). It takes every
//   queued spec at once and sends them as few `submit` messages as the batch size allows, so a
//   burst of submissions costs a handful of messages rather than one per task.
// - The reader thread is the only one that calls stream_->Read() and Finish(). It completes
//   futures as outcomes and rejections arrive and, when the stream ends, fails whatever is still
//   pending with UNAVAILABLE.
//
// Invariants:
// - A future is in pending_ from before its spec can be sent until after its result is set, so a
//   completion that races ahead of Submit() returning still finds it, and Shutdown(wait) returning
//   (pending_ empty) means every future is done.
// - Once stream_ended_ is set, nothing is added to pending_ any more: the reader's final sweep
//   and Submit() both run under mu_, so no future can be left behind unfinished.
//
// Thread-safety: Submit(), Shutdown() and workers() may be called from any thread.
#ifndef MPIGATE_CLIENT_INTERNAL_SESSION_H_
#define MPIGATE_CLIENT_INTERNAL_SESSION_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
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
#include "client/executor.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

// What every copy of one Future shares. Completed exactly once; later attempts are ignored.
struct FutureState {
  explicit FutureState(uint64_t id) : task_id(id) {}

  // Sets the result and wakes every waiter. Returns false if the state was already done.
  bool Complete(absl::StatusOr<std::string> value);

  const uint64_t task_id;
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<std::string> result ABSL_GUARDED_BY(mu) = absl::UnknownError("not done");
};

class Session {
 public:
  // Resolves the endpoint, connects, opens the session and starts the writer and reader threads.
  static absl::StatusOr<std::unique_ptr<Session>> Open(const ExecutorOptions& options);

  // Shutdown(wait=true, cancel_futures=false), then joins both threads.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Future Submit(absl::string_view function, std::string payload);
  void Shutdown(bool wait, bool cancel_futures);
  int workers() const { return workers_; }

 private:
  // One queued task and its encoded size inside a SubmitTasks message.
  struct OutgoingTask {
    v1::TaskSpec spec;
    size_t wire_bytes = 0;
  };

  explicit Session(const ExecutorOptions& options);

  // Connects and performs the open handshake on the calling thread; no threads run yet.
  absl::Status Handshake(const std::string& target, absl::Duration connect_timeout);

  void WriterLoop();
  void ReaderLoop();

  // Writer thread: sends `batch` as one or more `submit` messages. False if the stream broke.
  bool SendTasks(std::vector<OutgoingTask>& batch);

  // Reader thread: fulfils the futures of an `updates` or `rejected` event.
  void HandleCompleted(v1::TaskUpdates& completed);
  void HandleRejected(const v1::TaskRejections& rejected);
  // Reader thread: completes `states` (already looked up under mu_) and then drops them from
  // pending_. Completion happens before removal; see the invariants above.
  void FinishFutures(
      std::vector<std::pair<std::shared_ptr<FutureState>, absl::StatusOr<std::string>>>& results);

  bool WriterHasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DrainedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StreamEndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ended_; }

  // Set before the threads start, constant afterwards.
  const int max_message_bytes_;
  const std::string client_name_;
  std::string target_;
  int workers_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
  // Must outlive stream_ (declared before it, so destroyed after it).
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream_;
  bool started_ = false;

  // Task ids are the session's own: unique for its lifetime, never 0.
  std::atomic<uint64_t> next_task_id_{1};

  mutable absl::Mutex mu_;
  // Futures whose tasks have not ended, by task id.
  absl::flat_hash_map<uint64_t, std::shared_ptr<FutureState>> pending_ ABSL_GUARDED_BY(mu_);
  // Specs submitted but not yet taken by the writer.
  std::vector<OutgoingTask> outgoing_ ABSL_GUARDED_BY(mu_);
  // Shutdown() was called: submits fail, and the writer sends `shutdown` once.
  bool shutdown_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
  // The writer has taken the shutdown request; a later cancel_futures can no longer be sent.
  bool shutdown_taken_ ABSL_GUARDED_BY(mu_) = false;
  // The server sent `closed`: every accepted task has its outcome.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The reader saw the stream end; end_status_ says why (for failing later submits).
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);

  std::thread writer_;
  std::thread reader_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SESSION_H_
