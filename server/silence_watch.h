// SilenceWatch: tells which worker processes have gone silent, from the heartbeats they send.
//
// A worker on another host cannot be watched by its pid (server/worker_watch.h), and Open MPI 4.1
// reports the loss of a process through no MPI call (docs/worker-loss.md). Such a worker is asked
// for heartbeats (wire::HeartbeatFrame) instead: one that sends none for `limit` is taken as lost.
// A quiet heartbeat (the worker will not listen for a while: a gang function runs, a task runner
// starts) stops the count until the next one that is not quiet. Pure logic: the caller says what
// time it is, and asks right after it has taken every frame that had come (so that its own pauses
// are not taken for a worker's silence).
//
// Thread-safety: not thread-safe; the gateway's MPI thread owns it.
#ifndef MPIGATE_SERVER_SILENCE_WATCH_H_
#define MPIGATE_SERVER_SILENCE_WATCH_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace mpigate::server {

class SilenceWatch {
 public:
  explicit SilenceWatch(absl::Duration limit) : limit_(limit) {}

  absl::Duration limit() const { return limit_; }

  // Expects heartbeats from `id` from now on (`now` counts as one).
  void Watch(uint64_t id, absl::Time now);
  // A heartbeat from `id` came at `now`; ignored unless `id` is watched.
  void Heard(uint64_t id, absl::Time now, bool quiet);
  // No longer expects anything from `id`; no effect if it is not watched.
  void Unwatch(uint64_t id);
  // The ids silent for longer than the limit at `now`, in no order; they are no longer watched.
  std::vector<uint64_t> TakeSilent(absl::Time now);
  // The ids whose last heartbeat was quiet, in no order: only another way of watching them
  // (server/runtime_watch.h) can see them lost meanwhile.
  std::vector<uint64_t> Quiet() const;
  bool empty() const { return last_heard_.empty(); }

 private:
  struct LastHeard {
    absl::Time at;
    bool quiet = false;
  };
  const absl::Duration limit_;
  absl::flat_hash_map<uint64_t, LastHeard> last_heard_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SILENCE_WATCH_H_
