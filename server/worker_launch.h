// Starting the gateway's MPI jobs of workers, in its two modes: spawn mode (MPI_Comm_spawn from
// the gateway, a singleton or `mpiexec -n 1`), where lost workers are replaced by spawning a new
// job, and world mode (`mpiexec -n N+1 mpigate-server --world`: rank 0 is the gateway, ranks 1..N
// the workers), where nothing can be spawned.
//
// Thread-safety: these make MPI calls: only the gateway's MPI thread may call them.
#ifndef MPIGATE_SERVER_WORKER_LAUNCH_H_
#define MPIGATE_SERVER_WORKER_LAUNCH_H_

#include <mpi.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wire/frames.pb.h"
#include "worker/worker_options.h"

namespace mpigate::server {

// The pool's size, and where worker 0 is in a job's communicator.
struct PoolSize {
  int workers = 0;
  // 0 after a spawn; 1 in world mode, where rank 0 is the gateway.
  int rank_offset = 0;
};

// Sizes the pool once MPI is initialised: in world mode the ranks mpiexec started (`requested`,
// if positive, must match: INVALID_ARGUMENT otherwise, or with fewer than 2 ranks); in spawn mode
// `requested`, else ResolveWorkerCount's choice, if this MPI can spawn at all.
absl::StatusOr<PoolSize> SizePool(bool world, int requested);

// What a spawn starts: `workers` processes of `binary` with the arguments `options` make, and
// MPI_Info keys and values for MPI_Comm_spawn (e.g. "host", "wdir").
struct SpawnPlan {
  std::string binary;
  worker::WorkerOptions options;
  std::vector<std::pair<std::string, std::string>> info;
  int workers = 0;
};

// Spawns a job of workers (blocking until their MPI_Init); returns the parent side of its
// intercommunicator, set to return errors. UNAVAILABLE if the spawn fails.
absl::StatusOr<MPI_Comm> SpawnWorkers(const SpawnPlan& plan);

// Waits for a hello from each of the `workers` processes of `comm` (worker i at rank i +
// `rank_offset`), by worker. DEADLINE_EXCEEDED if not every one came within `timeout`; INTERNAL
// if a worker sent anything else first. Logs how each worker started.
absl::StatusOr<std::map<int, wire::HelloFrame>> AwaitHellos(MPI_Comm comm, int rank_offset,
                                                            int workers, absl::Duration timeout);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_WORKER_LAUNCH_H_
