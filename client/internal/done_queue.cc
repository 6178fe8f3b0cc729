#include "client/internal/done_queue.h"

namespace mpigate::internal {

std::shared_ptr<DoneQueue> DoneQueue::Watch(const std::vector<Future>& futures) {
  auto queue = std::make_shared<DoneQueue>();
  for (size_t i = 0; i < futures.size(); ++i) {
    futures[i].AddDoneCallback([queue, i](const Future&) { queue->Push(i); });
  }
  return queue;
}

std::optional<size_t> DoneQueue::Pop(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(this, &DoneQueue::NotEmptyLocked), deadline)) {
    return std::nullopt;
  }
  const size_t index = done_.front();
  done_.pop_front();
  return index;
}

void DoneQueue::Push(size_t index) {
  absl::MutexLock lock(&mu_);
  done_.push_back(index);
}

}  // namespace mpigate::internal
