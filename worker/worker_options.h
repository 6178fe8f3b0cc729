// WorkerOptions: how the pool's workers are set up (mpi4py's initializer, env, wdir, path), how
// they run task code, and the one command-line form that carries them to a spawned worker and
// from a worker to its task runner.
//
// No MPI here: the task runner (worker/runner_main.cc) shares it.
//
// Thread-safety: plain values and pure functions, except LoadFunctions (see there).
#ifndef MPIGATE_WORKER_WORKER_OPTIONS_H_
#define MPIGATE_WORKER_WORKER_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/registry.h"
#include "worker/task_runner.h"

namespace mpigate::worker {

struct WorkerOptions {
  // Run once before any task, wherever task code runs; failure breaks the pool.
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
  // Run task code on a thread of the worker process itself instead of in a task runner process
  // (mpigate-server --isolation=none): cheaper, but a crashing function takes the worker down.
  bool in_process = false;
  // The task runner executable (mpigate-runner); empty: the one next to this process's own
  // executable (see FindRunnerBinary).
  std::string runner_binary;
  // A worker that has not said hello this long after it started ends itself (exit status 1):
  // the gateway has given it up by then (mpigate-server --bootup_timeout), and it cannot stop a
  // process whose pid it learns only from the hello. Whole milliseconds; infinite: never.
  absl::Duration hello_timeout = absl::InfiniteDuration();
};

// Arguments that carry `options` to a spawned worker, e.g. "--env=OMP_NUM_THREADS=1".
std::vector<std::string> ToArgs(const WorkerOptions& options);

// The inverse of ToArgs. INVALID_ARGUMENT for an argument it does not know.
absl::StatusOr<WorkerOptions> ParseArgs(const std::vector<std::string>& args);

// INVALID_ARGUMENT unless every env entry is NAME=VALUE with a non-empty NAME.
absl::Status ValidateEnv(const std::vector<std::string>& env);

// What a task runner is started with: its worker's options (for the functions to load and the
// initializer) and the worker's place in the pool (for its tasks' TaskContext).
struct RunnerConfig {
  WorkerOptions worker;
  int rank = 0;
  int pool_size = 1;
  // The worker's pid: a runner whose parent is another has lost its worker before it could ask
  // to die with it, and exits.
  int worker_pid = 0;
};

// The runner's command line, and its inverse (INVALID_ARGUMENT for what it does not know).
std::vector<std::string> ToRunnerArgs(const RunnerConfig& config);
absl::StatusOr<RunnerConfig> ParseRunnerArgs(const std::vector<std::string>& args);

// `options.runner_binary` if set, else mpigate-runner next to this process's executable
// (/proc/self/exe), as an installed layout and Bazel's bazel-bin/worker both have it; for
// mpigate-server in world mode also ../worker/mpigate-runner. NOT_FOUND, naming where it looked,
// if none is executable.
absl::StatusOr<std::string> FindRunnerBinary(const std::string& explicit_path);

// Fills `registry` with what `options` make available: the built-ins, `exec` if allowed, and the
// functions of the task libraries. Loads libraries into the process: call once, from one thread,
// before tasks run.
absl::Status LoadFunctions(const WorkerOptions& options, FunctionRegistry& registry);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_OPTIONS_H_
