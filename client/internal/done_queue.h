// DoneQueue: the waiter behind AsCompleted(), Wait() and unordered Map(). Done callbacks push the
// index of each future as it completes; one consumer pops them, blocking with a deadline. Nothing
// polls.
//
// Thread-safety: Push() runs on whichever threads complete the futures; Pop() may be called from
// any thread. Held by shared_ptr: the callbacks keep it alive after its consumer has gone.
#ifndef MPIGATE_CLIENT_INTERNAL_DONE_QUEUE_H_
#define MPIGATE_CLIENT_INTERNAL_DONE_QUEUE_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/future.h"

namespace mpigate::internal {

class DoneQueue {
 public:
  // A queue into which futures[i] pushes i once done. Futures already done are pushed at once,
  // in order.
  static std::shared_ptr<DoneQueue> Watch(const std::vector<Future>& futures);

  // The index of the next future to be done, in completion order; nullopt if `deadline` passes
  // first.
  std::optional<size_t> Pop(absl::Time deadline);

 private:
  void Push(size_t index);
  bool NotEmptyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !done_.empty(); }

  absl::Mutex mu_;
  std::deque<size_t> done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_DONE_QUEUE_H_
