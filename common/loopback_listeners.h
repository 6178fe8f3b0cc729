// Loopback listeners: Open MPI's TCP listening sockets of a one-host pool on loopback only.
//
// Open MPI 4.1 binds its TCP listeners (btl tcp in the gateway and each worker, oob tcp in orted)
// to all interfaces whatever its if_include parameters say; a pool on one host needs none of them
// reachable from other machines. So, where OneHostPool() holds:
//  - the gateway and the worker link loopback_bind.h's bind() and socket() (exported, for the
//    components Open MPI dlopens); a ScopedLoopbackListeners open around MPI_Init, and only there,
//    sends binds to 0.0.0.0 to 127.0.0.1 and refuses IPv6 TCP sockets (Open MPI then takes the
//    host for one without IPv6). The gateway's own listeners, opened later, are untouched;
//  - orted loads the same functions from kLoopbackPreloadLibrary (LD_PRELOAD, which the library
//    takes out of its environment at once, so nothing orted starts inherits it);
//  - the workers learn of it through kLoopbackListenersEnv, inherited through orted.
//
// Thread-safety: the scope switches bind() and socket() for every thread of the process; open it
// where no thread but MPI's opens sockets.
#ifndef MPIGATE_COMMON_LOOPBACK_LISTENERS_H_
#define MPIGATE_COMMON_LOOPBACK_LISTENERS_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mpigate {

// Set to "1" in a one-host pool's environment by the gateway, for the workers.
inline constexpr char kLoopbackListenersEnv[] = "MPIGATE_LOOPBACK_LISTENERS";

// The preload library for orted, found next to mpigate-server.
inline constexpr char kLoopbackPreloadLibrary[] = "libmpigate_loopback_preload.so";

// Whether a pool the gateway is about to spawn can only run on this host, as far as the gateway
// can tell before MPI_Init: not under a launcher (mpiexec) or a resource manager whose allocation
// Open MPI would spawn into (SLURM, PBS, LSF, Grid Engine), no default hostfile given, and no
// MPI_Comm_spawn info key naming hosts. `spawn_info` holds --spawn-info's KEY=VALUE pairs;
// `getenv` reads the environment (a fake in tests).
bool OneHostPool(const std::vector<std::pair<std::string, std::string>>& spawn_info,
                 const std::function<const char*(const char*)>& getenv);

// Whether this process is a worker of a one-host pool (kLoopbackListenersEnv is "1"). Takes the
// variable out of the environment, so that the worker's task runners and the programs they run do
// not see it; call it once, before other threads start.
bool TakeLoopbackListenersRequest();

// While one is open with `active` true, binds of TCP sockets to 0.0.0.0 by any thread of this
// process are made to 127.0.0.1 instead, and IPv6 TCP sockets cannot be created. Scopes do not
// nest.
class ScopedLoopbackListeners {
 public:
  explicit ScopedLoopbackListeners(bool active);
  ~ScopedLoopbackListeners();

  ScopedLoopbackListeners(const ScopedLoopbackListeners&) = delete;
  ScopedLoopbackListeners& operator=(const ScopedLoopbackListeners&) = delete;

 private:
  const bool active_;
};

}  // namespace mpigate

#endif  // MPIGATE_COMMON_LOOPBACK_LISTENERS_H_
