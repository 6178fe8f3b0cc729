// WorkerLoop: the MPI side of a worker process. Runs the pool's initializer (through its
// executor), announces the worker to the gateway, then takes task frames and hands each run of
// them to whoever runs them until the gateway says shut down:
//   - the gateway link (worker/gateway_link.h) hears the gateway and sends the answers;
//   - the backlog (worker/task_backlog.h) holds the tasks handed over ahead (the scheduler's
//     prefetch), in the order they came; a cancel of a task still waiting drops it;
//   - an executor (worker/task_executor.h) runs plain, chunk and range tasks: in a task runner
//     process by default, on a task thread of this process with WorkerOptions.in_process;
//   - the gang runner (worker/gang_runner.h) runs gang tasks on this thread, which owns MPI.
//
// Idle, it polls with MPI_Improbe and sleeps between polls (wire::PollBackoff) instead of blocking
// in MPI_Recv, which in Open MPI busy-polls a whole core; once the gateway rings its doorbell it
// waits on that instead.
//
// Thread-safety: Run() makes MPI calls and must run on the thread that initialised MPI; one loop
// per process.
#ifndef MPIGATE_WORKER_WORKER_LOOP_H_
#define MPIGATE_WORKER_WORKER_LOOP_H_

#include <mpi.h>

#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/gang_runner.h"
#include "worker/gateway_link.h"
#include "worker/hello_deadline.h"
#include "worker/registry.h"
#include "worker/runner_process.h"
#include "worker/task_backlog.h"
#include "worker/task_executor.h"
#include "worker/task_runner.h"

namespace mpigate::worker {

// How the loop ended.
enum class LoopEnd {
  // The gateway said shut down while the worker was idle.
  kStopped,
  // In process only: the gateway said shut down while a task was still running. The task cannot
  // be interrupted: after finalising MPI the process must exit without waiting for it
  // (std::_Exit).
  kStoppedDuringTask,
};

class WorkerLoop {
 public:
  // `gateway` reaches the gateway at rank 0: the parent intercommunicator of spawned workers, or
  // MPI_COMM_WORLD in world mode. `workers` is where gangs come from; it must use
  // MPI_ERRORS_RETURN (wire::ReturnErrors).
  // `rank` and `pool_size` are what tasks see in their TaskContext. `runner` starts the task
  // runner that runs plain tasks; nullopt runs them in this process.
  // Run() meets `hello_deadline` once its hello has gone.
  WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry, int rank,
             int pool_size, Initializer initializer, HelloDeadline& hello_deadline,
             std::optional<RunnerProcess::Options> runner);
  // Kills the task runner, if one runs, and reaps it.
  ~WorkerLoop();
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Starts the executor (the task runner, the initializer), sends the hello frame, then serves
  // tasks until a shutdown frame, which it answers before returning. Returns the first MPI error
  // instead if there is one, or why the executor could not start (after saying so in the hello).
  // After kStoppedDuringTask the abandoned task still uses the registry: keep it alive until exit.
  absl::StatusOr<LoopEnd> Run();

  // After Run(): whether to disconnect from the gateway before finalising MPI. False if the
  // gateway said that its communicator with this worker lost a process
  // (ShutdownFrame.skip_disconnect).
  bool disconnect() const { return link_.disconnect(); }

 private:
  // Ends the executor's task code and answers the gateway's shutdown.
  absl::StatusOr<LoopEnd> Stop();

  const FunctionRegistry& registry_;
  HelloDeadline& hello_deadline_;
  TaskBacklog backlog_;
  GatewayLink link_;
  GangRunner gangs_;
  std::unique_ptr<TaskExecutor> executor_;
};

// Tells the gateway this worker could not start (e.g. a registry error), so that it fails bootup
// with the reason instead of waiting.
absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_LOOP_H_
