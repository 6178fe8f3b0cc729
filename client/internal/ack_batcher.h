// AckBatcher: the outcomes a session has handled and not yet acknowledged to the service, which
// holds each outcome until then. They go out in batches, once many are waiting, or they hold many
// bytes on the service, or the oldest has waited kDelay: a burst of results costs one `ack` per
// few thousand tasks and a sequential client one per kDelay, never one per task.
//
// Thread-safety: none of its own; the Session calls it under its lock. Pure logic: time comes in
// as arguments.
#ifndef MPIGATE_CLIENT_INTERNAL_ACK_BATCHER_H_
#define MPIGATE_CLIENT_INTERNAL_ACK_BATCHER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace mpigate::internal {

class AckBatcher {
 public:
  static constexpr size_t kMaxIds = 4096;
  static constexpr size_t kMaxBytes = 4 << 20;
  static constexpr absl::Duration kDelay = absl::Milliseconds(20);

  // Outcomes of `ids`, `bytes` encoded, handled at `now`.
  void Add(const std::vector<uint64_t>& ids, size_t bytes, absl::Time now);

  bool empty() const { return ids_.empty(); }
  // Due by number or bytes, whatever the time.
  bool Full() const { return ids_.size() >= kMaxIds || bytes_ >= kMaxBytes; }
  // When the oldest is due; InfiniteFuture() when empty.
  absl::Time due() const { return due_; }
  // Not empty, and full or due by `now`.
  bool DueAt(absl::Time now) const { return !ids_.empty() && (Full() || now >= due_); }
  // The ids waiting, e.g. for an `open` that acknowledges them.
  const std::vector<uint64_t>& ids() const { return ids_; }

  // Swaps the ids waiting into `out` (which must be empty) and starts a new batch: the two
  // vectors trade their buffers, so a writer that reuses `out` allocates nothing.
  void TakeInto(std::vector<uint64_t>& out);
  // Forgets the batch (an `open` acknowledged it).
  void Clear();

 private:
  std::vector<uint64_t> ids_;
  size_t bytes_ = 0;
  absl::Time due_ = absl::InfiniteFuture();
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_ACK_BATCHER_H_
