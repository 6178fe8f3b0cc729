#include "client/internal/ack_batcher.h"

namespace mpigate::internal {

void AckBatcher::Add(const std::vector<uint64_t>& ids, size_t bytes, absl::Time now) {
  if (ids.empty()) return;
  if (ids_.empty()) due_ = now + kDelay;
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  bytes_ += bytes;
}

void AckBatcher::TakeInto(std::vector<uint64_t>& out) {
  out.swap(ids_);
  bytes_ = 0;
  due_ = absl::InfiniteFuture();
}

void AckBatcher::Clear() {
  ids_.clear();
  bytes_ = 0;
  due_ = absl::InfiniteFuture();
}

}  // namespace mpigate::internal
