// StopSignal: turns SIGTERM and SIGINT, and stop requests from inside the process (the StopService
// RPC, a pool that failed to start), into the one stop the gateway's main thread waits for.
//
// The handler only writes the signal number to a pipe (async-signal-safe); Wait() reads it. A pipe
// rather than a blocked signal mask, because a mask would be inherited by the MPI daemon and the
// workers it starts, which then could not be stopped by a signal.
//
// Thread-safety: Install() once, early, from the main thread; Wait() from one thread; Request()
// from any thread, after Install().
#ifndef MPIGATE_SERVER_STOP_SIGNAL_H_
#define MPIGATE_SERVER_STOP_SIGNAL_H_

#include <string>

#include "absl/status/status.h"

namespace mpigate::server {

class StopSignal {
 public:
  // Installs the handlers for SIGTERM and SIGINT.
  static absl::Status Install();

  // Asks for a stop, for `reason`, as a signal would. Never blocks.
  static void Request(std::string reason);

  // Blocks until a stop signal or request arrives; returns its name, e.g. "SIGTERM", or the
  // reason of the first request.
  static std::string Wait();
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_STOP_SIGNAL_H_
