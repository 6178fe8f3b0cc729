// The functions every worker has, for tests, demos and health checks:
//   echo   returns its input unchanged.
//   sleep  sleeps for the number of milliseconds its input gives (ASCII decimal).
//   spin   keeps a core busy for the milliseconds its input gives (ASCII decimal).
//   fail   fails with status UNKNOWN and its input as the message.
#ifndef MPIGATE_WORKER_BUILTINS_H_
#define MPIGATE_WORKER_BUILTINS_H_

#include "absl/status/status.h"
#include "worker/registry.h"

namespace mpigate::worker {

// Adds the built-in functions to `registry`.
absl::Status RegisterBuiltins(FunctionRegistry& registry);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_BUILTINS_H_
