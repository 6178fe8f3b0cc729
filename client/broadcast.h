// mpigate::BroadcastFuture: the eventual outcome of Executor::Broadcast(), one task that runs its
// function once on every worker of the pool at once (IPython's %px), e.g. to load data or warm a
// cache before the tasks that use it.
//
//   mpigate::BroadcastFuture loaded = executor->Broadcast("mylib.load", "/data/grid.h5");
//   absl::StatusOr<std::vector<absl::StatusOr<std::string>>> per_worker = loaded.Results();
//   if (!per_worker.ok()) return per_worker.status();   // the broadcast as a whole failed
//   for (const absl::StatusOr<std::string>& result : *per_worker) { ... }   // worker 0, 1, ...
//
// The broadcast waits until every worker is idle at once, then runs on all of them. Its future()
// is an ordinary Future: state, Wait(), Cancel() (while it waits for the workers), Interrupt(),
// progress and callbacks. Each worker's call succeeds or fails on its own; the broadcast as a
// whole fails only when it does not run: rejected, cancelled, the connection lost.
//
// Thread-safety: as Future: cheap to copy, copies share one state, any method from any thread.
#ifndef MPIGATE_CLIENT_BROADCAST_H_
#define MPIGATE_CLIENT_BROADCAST_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/future.h"

namespace mpigate {

class Executor;

class BroadcastFuture {
 public:
  // The broadcast task's future: a copy, sharing its state, so that it can be cancelled or
  // interrupted. The per-worker results are not its Result() but Results().
  Future future() const { return future_; }

  // Waits until the broadcast is done, then returns one result or error per worker, in worker
  // order. The outer status is the whole task's failure: its rejection (e.g. INVALID_ARGUMENT
  // with a gang size, NOT_FOUND for an unknown function), CANCELLED, UNAVAILABLE for a lost
  // connection, or DEADLINE_EXCEEDED naming the wait if `timeout` passes first (the broadcast
  // goes on). May be called any number of times.
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> Results(
      absl::Duration timeout = absl::InfiniteDuration()) const;

 private:
  friend class Executor;
  explicit BroadcastFuture(Future future) : future_(std::move(future)) {}

  Future future_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_BROADCAST_H_
