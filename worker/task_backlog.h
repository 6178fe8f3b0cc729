// TaskBacklog: the tasks the gateway has handed this worker ahead of the one it runs (the
// scheduler's prefetch), in the order they came, kept as they came (serialized TaskFrames) so that
// they reach a task runner without being decoded.
//
// Thread-safety: not thread-safe; owned by the worker's MPI thread.
#ifndef MPIGATE_WORKER_TASK_BACKLOG_H_
#define MPIGATE_WORKER_TASK_BACKLOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "wire/task_peek.h"

namespace mpigate::worker {

class TaskBacklog {
 public:
  struct Entry {
    wire::TaskHeader header;
    std::string frame;
    // Interrupted while queued in the task runner: if that runner dies before it answers, the
    // task is answered as dropped rather than handed to the next one.
    bool interrupted = false;
  };

  // Appends a serialized TaskFrame; INTERNAL if it is not one.
  absl::Status Add(std::string frame);
  // Puts back a task taken with TakeFront(), ahead of the rest.
  void PushFront(Entry entry);
  // Removes the task `task_key` if it waits here; true if it did.
  bool Drop(uint64_t task_key);
  // The first task, removed. Only when not empty.
  Entry TakeFront();
  bool empty() const { return entries_.empty(); }
  // Only when not empty.
  bool front_is_gang() const { return entries_.front().header.gang; }
  size_t front_bytes() const { return entries_.front().frame.size(); }

 private:
  std::deque<Entry> entries_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_BACKLOG_H_
