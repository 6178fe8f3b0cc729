// Spawn attributes for a child process of a worker (a task runner, a program run by `exec`) that
// must not inherit the worker's signal state: the worker's thread may block signals, and Open MPI
// installs handlers, both of which exec would pass on.
//
// Thread-safety: a pure function of its argument; safe from any thread.
#ifndef MPIGATE_WORKER_CLEAN_SPAWN_H_
#define MPIGATE_WORKER_CLEAN_SPAWN_H_

#include <spawn.h>
#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mpigate::worker {

// Where the child starts.
enum class SpawnGroup {
  // A process group of its own: a kill of the group reaches whatever it starts too.
  kProcessGroup,
  // A session of its own (setsid), which makes a process group of its own too: whatever it starts
  // stays in the session, also in process groups of their own (KillSession reaches them).
  kSession,
};

// Sets up `attributes`, already initialised with posix_spawnattr_init, so that the child starts
// in a process group or session of its own, with an empty signal mask and every signal at its
// default disposition (a crash dies of its own signal).
absl::Status SetCleanSpawnAttributes(posix_spawnattr_t& attributes,
                                     SpawnGroup group = SpawnGroup::kProcessGroup);

// Kills with SIGKILL every process of session `session` that has not died yet, and returns true
// once none is left alive (the dead are zombies until their parent, or whoever adopted them, reaps
// them); false if some still lived after `patience` (stuck in the kernel) or /proc cannot be
// read. A session id is the pid of the process that made it, and stays taken while any process
// is in the session, so this reaches no one else. Linux only: it reads /proc.
bool KillSession(pid_t session, absl::Duration patience);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_CLEAN_SPAWN_H_
