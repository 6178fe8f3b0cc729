#include "server/pool_health.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::server {
namespace {

constexpr absl::Duration kFirstSpawnPause = absl::Seconds(1);
constexpr absl::Duration kMaxSpawnPause = absl::Seconds(60);

}  // namespace

absl::Duration PoolHealth::SpawnPause(int failures) {
  if (failures <= 0) return absl::ZeroDuration();
  absl::Duration pause = kFirstSpawnPause;
  for (int i = 1; i < failures && pause < kMaxSpawnPause; ++i) pause *= 2;
  return std::min(pause, kMaxSpawnPause);
}

void PoolHealth::CountFailure(absl::Time now) {
  ++failures_;
  next_spawn_ = std::max(next_spawn_, now + SpawnPause(failures_));
  dirty_ = true;
}

void PoolHealth::SetLastLoss(std::string loss) {
  last_loss_ = std::move(loss);
  dirty_ = true;
}

std::optional<std::string> PoolHealth::Update(absl::Time now, uint64_t table_changes,
                                              const Shape& shape) {
  dirty_ = false;
  seen_changes_ = table_changes;
  refresh_ = absl::InfiniteFuture();
  std::string reason;
  if (shape.down > 0 || shape.spawn_due) {
    reason =
        absl::StrCat(shape.down, " of ", shape.workers, " workers out of service; ", last_loss_);
    if (world_) {
      absl::StrAppend(&reason, "; in world mode nothing can replace them");
    } else if (failures_ > 0 && next_spawn_ > now) {
      absl::StrAppend(&reason, "; replacements keep failing (", failures_,
                      " in a row): the next attempt within ",
                      absl::FormatDuration(absl::Ceil(next_spawn_ - now, absl::Seconds(1))));
      // The count down, and what follows it.
      refresh_ = now + absl::Seconds(1);
    } else {
      absl::StrAppend(&reason, "; replacements are starting");
    }
  } else if (failures_ > 0) {
    // Whole again: the failures in a row end once its processes have lived a while.
    if (now - shape.youngest_up >= kShortLife) {
      failures_ = 0;
    } else {
      refresh_ = shape.youngest_up + kShortLife;
    }
  }
  if (reason == reason_) return std::nullopt;
  reason_ = reason;
  return reason_;
}

}  // namespace mpigate::server
