// StopSignal: turns SIGTERM and SIGINT into a stop request the gateway's main thread waits for.
//
// The handler only writes the signal number to a pipe (async-signal-safe); Wait() reads it. A pipe
// rather than a blocked signal mask, because a mask would be inherited by the MPI daemon and the
// workers it starts, which then could not be stopped by a signal.
//
// Thread-safety: Install() once, early, from the main thread; Wait() from one thread.
#ifndef MPIGATE_SERVER_STOP_SIGNAL_H_
#define MPIGATE_SERVER_STOP_SIGNAL_H_

#include <string>

#include "absl/status/status.h"

namespace mpigate::server {

class StopSignal {
 public:
  // Installs the handlers for SIGTERM and SIGINT.
  static absl::Status Install();

  // Blocks until a stop signal arrives; returns its name, e.g. "SIGTERM".
  static std::string Wait();
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_STOP_SIGNAL_H_
