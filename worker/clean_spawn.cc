#include "worker/clean_spawn.h"

#include <signal.h>

namespace mpigate::worker {

absl::Status SetCleanSpawnAttributes(posix_spawnattr_t& attributes) {
  sigset_t no_signals;
  sigset_t all_signals;
  sigemptyset(&no_signals);
  sigfillset(&all_signals);
  int error = posix_spawnattr_setflags(
      &attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (error == 0) error = posix_spawnattr_setpgroup(&attributes, 0);
  if (error == 0) error = posix_spawnattr_setsigmask(&attributes, &no_signals);
  if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &all_signals);
  if (error != 0) return absl::ErrnoToStatus(error, "posix_spawnattr");
  return absl::OkStatus();
}

}  // namespace mpigate::worker
