// The functions every worker has, for tests, demos and health checks:
//   echo   returns its input unchanged.
//   sleep  sleeps for the number of milliseconds its input gives (ASCII decimal).
//   spin   keeps a core busy for the milliseconds its input gives (ASCII decimal).
//   fail   fails with status UNKNOWN and its input as the message.
//   getenv returns the worker's value of the environment variable its input names.
//   setenv sets NAME=VALUE (its input) in the worker's environment; useful as an initializer.
//   getcwd returns the worker's working directory.
#ifndef MPIGATE_WORKER_BUILTINS_H_
#define MPIGATE_WORKER_BUILTINS_H_

#include "absl/status/status.h"
#include "worker/registry.h"

namespace mpigate::worker {

// Adds the built-in functions to `registry`.
absl::Status RegisterBuiltins(FunctionRegistry& registry);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_BUILTINS_H_
