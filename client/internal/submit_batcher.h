// SubmitBatcher: the task specs of a session on their way to the service. Submitted specs queue
// until the writer takes them all at once and writes them as few `submit` messages as the size
// limit allows (a burst costs a handful of messages, not one per task). A written batch is kept
// until the service evidently has its last spec (an event names a task id at least as high: the
// stream is ordered), so a resumed session sends again every spec the service may lack.
//
// Thread-safety: none of its own; the Session calls it under its lock, except Write(), which
// touches only the batch and stream it is given (the writer thread, outside the lock).
#ifndef MPIGATE_CLIENT_INTERNAL_SUBMIT_BATCHER_H_
#define MPIGATE_CLIENT_INTERNAL_SUBMIT_BATCHER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/executor.h"
#include "client/internal/session_stream.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"

namespace mpigate::internal {

// One task spec and its encoded size inside a SubmitTasks message.
struct OutgoingTask {
  v1::TaskSpec spec;
  size_t wire_bytes = 0;
};

class SubmitBatcher {
 public:
  // What a SessionRequest adds around its SubmitTasks, and a SubmitTasks around each TaskSpec: a
  // tag and a length varint. Generous upper bounds; they only need to keep messages under the
  // limit.
  static constexpr size_t kRequestOverhead = 16;
  static constexpr size_t kPerTaskOverhead = 1 + 10;
  // A burst goes out in messages of about this much task data: large enough that per-message
  // costs vanish, small enough that the first tasks of a big burst reach the workers before the
  // whole burst is encoded. A single larger task goes alone.
  static constexpr size_t kBatchBytes = 4 << 20;

  // A task for `function` with `options` applied; the caller adds its input.
  static OutgoingTask NewTask(absl::string_view function, const SubmitOptions& options);
  // The encoded size of `spec` in a `submit`, measured before it has its id, with room for any.
  static size_t WireBytes(const v1::TaskSpec& spec);
  // Whether a task of `wire_bytes` fits a message of at most `send_limit` bytes.
  static bool Fits(size_t wire_bytes, size_t send_limit) {
    return wire_bytes + kRequestOverhead <= send_limit;
  }
  // The input object of a spec the service never heard of, released for reuse.
  static void ReleaseInput(const v1::TaskSpec& spec);

  // Writes `batch` as `submit` messages of at most `send_limit` bytes (each of whose tasks Fits).
  // False if the stream broke. The specs are moved back into `batch` as they are written, for
  // KeepSent(); no payload is copied.
  static bool Write(SessionStream& stream, std::vector<OutgoingTask>& batch, size_t send_limit);

  // Queues `task`, whose spec has its id: ids increase in queueing order.
  void Queue(OutgoingTask task) { queued_.push_back(std::move(task)); }
  bool has_queued() const { return !queued_.empty(); }
  // Swaps everything queued into `batch`, which must be empty.
  void TakeQueued(std::vector<OutgoingTask>& batch);
  // `batch` was written (or its stream broke on the way): kept until received. Empties `batch`.
  void KeepSent(std::vector<OutgoingTask>& batch);
  // The service evidently has every spec up to `task_id`.
  void ReceivedUpTo(uint64_t task_id);
  // A resumed session's service has every spec up to `last_task_id`: the others kept are queued
  // again, ahead of anything queued since (which has higher ids).
  void RequeueAfter(uint64_t last_task_id);
  // The session is over: removes the input objects of the specs kept (the service may have
  // them, but nothing will run them now) and releases those of the specs queued.
  void DropAll();

 private:
  // Specs written together; the service has them all once it has the last.
  struct SentBatch {
    uint64_t last_task_id = 0;
    std::vector<OutgoingTask> tasks;
  };

  std::vector<OutgoingTask> queued_;
  // In id order.
  std::deque<SentBatch> sent_;
  // The storage of a batch the service has, empty, for the next specs queued: a submit loop's
  // queue then grows once, not again from nothing after every write (each growth moving every
  // spec queued so far, under the session's lock).
  std::vector<OutgoingTask> spare_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SUBMIT_BATCHER_H_
