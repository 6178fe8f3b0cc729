// SecondCounts: how many events happened in each of the last kSlots seconds, in a fixed ring
// indexed by the second since the epoch, and the rate over a window of them. O(1) per event, no
// allocation: for counters kept on the scheduler's hot path (tasks ended per second, for the pool
// and for each session).
//
// Thread-safety: none of its own; its owner's lock.
#ifndef MPIGATE_SERVER_SECOND_COUNTS_H_
#define MPIGATE_SERVER_SECOND_COUNTS_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace mpigate::server {

template <size_t kSlots>
class SecondCounts {
 public:
  // One event in `second` (since the epoch). Seconds go forward; an event of a second older than
  // kSlots before the latest is lost.
  void Add(int64_t second) {
    Slot& slot = slots_[static_cast<size_t>(second) % kSlots];
    if (slot.second != second) slot = Slot{second, 0};
    ++slot.count;
  }

  // Events in `second`, if it is among the last kSlots; else 0.
  uint64_t At(int64_t second) const {
    const Slot& slot = slots_[static_cast<size_t>(second) % kSlots];
    return slot.second == second ? slot.count : 0;
  }

  // Events per second over the `window_seconds` (at most kSlots) before `now`: the current second
  // so far and the whole ones before it, or over the time since `since` when that is shorter.
  double PerSecond(absl::Time now, absl::Time since, int window_seconds) const {
    const int64_t second = absl::ToUnixSeconds(now);
    const int64_t first = second - (window_seconds - 1);
    uint64_t events = 0;
    for (const Slot& slot : slots_) {
      if (slot.second >= first && slot.second <= second) events += slot.count;
    }
    const absl::Time window_start = std::max(absl::FromUnixSeconds(first), since);
    const double seconds = absl::ToDoubleSeconds(now - window_start);
    return seconds > 0 ? static_cast<double>(events) / seconds : 0;
  }

 private:
  struct Slot {
    int64_t second = -1;
    uint64_t count = 0;
  };
  std::array<Slot, kSlots> slots_ = {};
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SECOND_COUNTS_H_
