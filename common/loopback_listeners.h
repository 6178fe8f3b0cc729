// Loopback listeners: Open MPI's TCP listening sockets of a one-host pool on loopback only.
//
// Open MPI 4.1 binds every TCP listening socket it opens to all interfaces (0.0.0.0 and ::),
// whatever its if_include parameters say (they choose only the addresses it advertises and uses):
// the point-to-point layer's (btl tcp) in the gateway and in each worker, and the out-of-band
// channel's (oob tcp) in its runtime daemon, orted. A pool whose processes all run on one host
// needs none of them reachable from other machines. So:
//  - the gateway and the worker link this library, which defines bind() and socket()
//    (loopback_bind.h): while a ScopedLoopbackListeners is open, the process's TCP binds to
//    0.0.0.0 go to 127.0.0.1 and IPv6 TCP sockets are refused, which Open MPI takes as a host
//    without IPv6 (binding them to ::1 instead would fail where loopback has no ::1, and Open MPI
//    then gives up TCP altogether). The binaries export both symbols, so that the components Open
//    MPI loads with dlopen find them. The scope is open around MPI_Init, which is where Open MPI
//    opens its listeners, and only there: the gateway's own gRPC and metrics listeners are opened
//    later, on the addresses their flags say;
//  - orted, Open MPI's program, which the gateway's MPI_Init starts, loads the same functions from
//    kLoopbackPreloadLibrary through LD_PRELOAD, rewriting for its whole life; the library takes
//    itself out of LD_PRELOAD at once, so nothing orted starts inherits it;
//  - the gateway tells the workers through kLoopbackListenersEnv, which they inherit from it
//    through orted.
// Where a pool may span hosts (OneHostPool() says false) none of this is done.
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
