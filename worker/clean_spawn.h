// Spawn attributes for a child process of a worker (a task runner, a program run by `exec`) that
// must not inherit the worker's signal state: the worker's thread may block signals, and Open MPI
// installs handlers, both of which exec would pass on.
//
// Thread-safety: a pure function of its argument; safe from any thread.
#ifndef MPIGATE_WORKER_CLEAN_SPAWN_H_
#define MPIGATE_WORKER_CLEAN_SPAWN_H_

#include <spawn.h>

#include "absl/status/status.h"

namespace mpigate::worker {

// Sets up `attributes`, already initialised with posix_spawnattr_init, so that the child starts
// in a process group of its own (a kill of the group reaches whatever it starts too), with an
// empty signal mask and every signal at its default disposition (a crash dies of its own signal).
absl::Status SetCleanSpawnAttributes(posix_spawnattr_t& attributes);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_CLEAN_SPAWN_H_
