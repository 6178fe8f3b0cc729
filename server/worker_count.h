// How many workers the pool gets, when --workers does not say: pure logic, tested without MPI.
#ifndef MPIGATE_SERVER_WORKER_COUNT_H_
#define MPIGATE_SERVER_WORKER_COUNT_H_

#include <optional>

#include "absl/status/statusor.h"

namespace mpigate::server {

// Picks the number of workers: `requested` if positive, else $MPIGATE_MAX_WORKERS (given as
// `env`), else the MPI universe size less the processes already running (`universe_size` minus
// `world_size`, when the universe is larger), else the number of cores. INVALID_ARGUMENT for a
// malformed or non-positive environment value.
absl::StatusOr<int> ResolveWorkerCount(int requested, const char* env,
                                       std::optional<int> universe_size, int world_size, int cores);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_WORKER_COUNT_H_
