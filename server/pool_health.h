// PoolHealth: how the pool heals, as the MPI thread keeps it: replacement jobs that failed in a
// row and the pause before the next spawn, the last loss, and the reason the pool is degraded
// (what Scheduler::SetDegraded and PoolStatus.degraded_reason say).
//
// A replacement that keeps failing (a spawn error, a failed initializer, a death soon after
// starting) must not be retried in a tight loop, so each failure in a row doubles the pause, from
// a second up to a minute; a pool whose processes have all lived a while forgets the failures.
// Pure logic: the caller says what time it is and what the process table looks like.
//
// Thread-safety: not thread-safe; the gateway's MPI thread owns it.
#ifndef MPIGATE_SERVER_POOL_HEALTH_H_
#define MPIGATE_SERVER_POOL_HEALTH_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace mpigate::server {

class PoolHealth {
 public:
  // A worker process lost younger than this counts as a failed replacement.
  static constexpr absl::Duration kShortLife = absl::Seconds(10);

  // What the degraded reason is made from, as the process table has it.
  struct Shape {
    int workers = 0;
    int down = 0;
    // A replacement job is due (the newest lost a process, or failed to start).
    bool spawn_due = false;
    // When the youngest process serving a worker came up.
    absl::Time youngest_up = absl::InfinitePast();
  };

  // `world`: nothing can be spawned (world mode); the reason says so.
  explicit PoolHealth(bool world) : world_(world) {}

  // The pause before the next spawn after `failures` failed replacements in a row.
  static absl::Duration SpawnPause(int failures);
  // Whether a process lost at `now` counts as short-lived: it had not said hello, or came up
  // less than kShortLife before.
  static bool ShortLived(bool booting, absl::Time up_since, absl::Time now) {
    return booting || now - up_since < kShortLife;
  }

  int failures() const { return failures_; }
  // When the next replacement may be spawned.
  absl::Time next_spawn() const { return next_spawn_; }
  const std::string& last_loss() const { return last_loss_; }

  // A replacement failed at `now`: the next waits SpawnPause(failures()), or longer if held.
  void CountFailure(absl::Time now);
  // No spawn before `when`, whatever the pause says.
  void HoldSpawnUntil(absl::Time when) {
    next_spawn_ = std::max(next_spawn_, when);
    dirty_ = true;
  }
  // A process that had lived a while was lost: it ends the failures in a row.
  void ResetFailures() { failures_ = 0; }
  // What the degraded reason names as the latest loss.
  void SetLastLoss(std::string loss);

  // Whether the reason may have changed: the process table changed since the last Update()
  // (`table_changes` is ProcessTable::changes()), a failure or loss was recorded, or a count
  // down it shows has moved on. Cheap: the dispatch loop asks every round.
  bool NeedsUpdate(absl::Time now, uint64_t table_changes) const {
    return dirty_ || table_changes != seen_changes_ || now >= refresh_;
  }
  // Rebuilds the reason at `now` ("" while the pool is whole); returns it if it changed.
  std::optional<std::string> Update(absl::Time now, uint64_t table_changes, const Shape& shape);
  const std::string& reason() const { return reason_; }

 private:
  const bool world_;
  int failures_ = 0;
  absl::Time next_spawn_ = absl::InfinitePast();
  std::string last_loss_;
  std::string reason_;
  bool dirty_ = true;
  uint64_t seen_changes_ = 0;
  absl::Time refresh_ = absl::InfiniteFuture();
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_POOL_HEALTH_H_
