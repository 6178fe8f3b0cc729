// TaskExecutor: where a worker runs its plain, chunk and range tasks (gang tasks run on the MPI
// thread, worker/gang_runner.h). Two kinds, chosen at start (WorkerOptions.in_process):
//   - RunnerExecutor (worker/runner_executor.h): in a task runner process, so that a crash takes
//     down the runner and not the MPI worker;
//   - InProcessExecutor (worker/in_process_executor.h): on a task thread of the worker itself.
// The worker loop calls it once per run of tasks at the backlog's front, not per byte or frame.
//
// Thread-safety: called only by the worker's MPI thread.
#ifndef MPIGATE_WORKER_TASK_EXECUTOR_H_
#define MPIGATE_WORKER_TASK_EXECUTOR_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wire/frames.pb.h"

namespace mpigate::worker {

// How Serve() ended.
enum class ServeEnd {
  // The tasks it took are answered; the backlog is empty or holds a gang task first.
  kServed,
  // The gateway said shut down (Stop(), then the goodbye, answer it).
  kShutdown,
  // The gateway said shut down while a task that cannot be interrupted ran, and the goodbye has
  // been said (see LoopEnd::kStoppedDuringTask).
  kShutdownDuringTask,
};

class TaskExecutor {
 public:
  virtual ~TaskExecutor() = default;

  // Runs the pool's initializer wherever task code runs and fills in `hello` (runner_pid,
  // initializer_error). An error if no task can run at all: the hello then says so.
  virtual absl::Status Start(wire::HelloFrame& hello) = 0;

  // Runs the tasks at the front of the backlog, up to the first gang task, and answers the
  // gateway for each, listening to it meanwhile. Requires a non-gang task at the front.
  virtual absl::StatusOr<ServeEnd> Serve() = 0;

  // Before the goodbye of a shutdown: ends what runs task code, so that it is gone before the
  // gateway hears the goodbye (once it has, the pool may be taken down).
  virtual void Stop() = 0;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_EXECUTOR_H_
