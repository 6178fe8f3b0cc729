// A whole worker process, after MPI_Init: shapes its environment as the pool's options say,
// registers the built-in functions and loads the task libraries, runs the WorkerLoop and finalises
// MPI. Shared by mpigate-worker (spawned workers) and mpigate-server's ranks 1..N in world mode.
//
// Options reach spawned workers as command-line arguments (ToArgs / ParseArgs keep the one format
// in one place); in world mode every rank already has the server's own flags.
//
// Thread-safety: RunWorkerProcess makes MPI calls: call it on the thread that initialised MPI.
#ifndef MPIGATE_WORKER_WORKER_PROCESS_H_
#define MPIGATE_WORKER_WORKER_PROCESS_H_

#include <mpi.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/worker_loop.h"

namespace mpigate::worker {

struct WorkerOptions {
  // Run once before any task; failure breaks the pool.
  Initializer initializer;
  // NAME=VALUE settings for the worker's environment, applied before anything else runs.
  std::vector<std::string> env;
  // The working directory; empty keeps the one MPI started the process in.
  std::string wdir;
  // Task libraries to load at start (see task_library.h), and the directories to find them in.
  std::vector<std::string> task_libs;
  std::vector<std::string> task_lib_path;
  // Register the built-in `exec`, which runs programs (worker/exec_task.h).
  bool allow_exec = false;
};

// Arguments that carry `options` to a spawned worker, e.g. "--env=OMP_NUM_THREADS=1".
std::vector<std::string> ToArgs(const WorkerOptions& options);

// The inverse of ToArgs. INVALID_ARGUMENT for an argument it does not know.
absl::StatusOr<WorkerOptions> ParseArgs(const std::vector<std::string>& args);

// INVALID_ARGUMENT unless every env entry is NAME=VALUE with a non-empty NAME.
absl::Status ValidateEnv(const std::vector<std::string>& env);

// Runs the worker whose gateway is rank 0 of `gateway`, then disconnects from it (spawned
// workers; not for MPI_COMM_WORLD) and finalises MPI. Returns the process's exit code; exits the
// process itself if the gateway stopped it while a task was still running.
int RunWorkerProcess(MPI_Comm gateway, bool disconnect, const WorkerOptions& options);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_PROCESS_H_
