// WorkerLoop: the MPI side of a worker process. Runs the pool's initializer, announces the worker
// to the gateway, then receives task frames, runs them on the task thread and sends back result
// frames until the gateway says shut down.
//
// Idle cost: it polls with MPI_Improbe and sleeps between polls (wire::PollBackoff) instead of
// blocking in MPI_Recv, which in Open MPI busy-polls a whole core. While a task runs, it waits on
// the task thread and every 20 ms forwards the task's latest progress report and looks for a
// cancel (which sets the task's cancellation flag) or a shutdown from the gateway.
//
// A gang task (TaskFrame.gang, worker/gang.h) runs on the loop's own thread instead, because its
// function makes MPI calls and MPI belongs to that thread: the loop makes the gang's communicator
// with the other members (MPI_Comm_create_group over WorkerGroup), calls the function, and frees
// the communicator. The loop cannot listen while the function runs, so the function's polls of
// GangContext::cancelled() do it, at most every millisecond; a shutdown heard then interrupts the
// call and is answered when it returns.
//
// Thread-safety: Run() makes MPI calls and must run on the thread that initialised MPI; one loop
// per process.
#ifndef MPIGATE_WORKER_WORKER_LOOP_H_
#define MPIGATE_WORKER_WORKER_LOOP_H_

#include <mpi.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/registry.h"

namespace mpigate::worker {

// How the loop ended.
enum class LoopEnd {
  // The gateway said shut down while the worker was idle.
  kStopped,
  // The gateway said shut down while a task was still running. The task cannot be interrupted:
  // after finalising MPI the process must exit without waiting for it (std::_Exit).
  kStoppedDuringTask,
};

// A function run once on the worker, before any task (mpi4py's initializer and initargs).
struct Initializer {
  // A registered function name; empty for none.
  std::string function;
  // Its input.
  std::string input;
};

// The communicator that gang communicators are made from: it holds every worker of the pool, and
// may hold other processes (the gateway, in world mode), which need not take part.
struct WorkerGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  // Worker i is rank first_rank + i of `comm`.
  int first_rank = 0;
};

class WorkerLoop {
 public:
  // `gateway` reaches the gateway at rank 0: the parent intercommunicator of spawned workers, or
  // MPI_COMM_WORLD in world mode. `workers` is where gangs come from; it must use
  // MPI_ERRORS_RETURN (wire::ReturnErrors).
  // `rank` and `pool_size` are what tasks see in their TaskContext.
  WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry, int rank,
             int pool_size, Initializer initializer);
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Runs the initializer, sends the hello frame, then serves tasks until a shutdown frame, which
  // it answers before returning. Returns the first MPI error instead if there is one. After
  // kStoppedDuringTask the abandoned task still uses the registry: keep it alive until exit.
  absl::StatusOr<LoopEnd> Run();

 private:
  MPI_Comm gateway_;
  const WorkerGroup workers_;
  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  const Initializer initializer_;
};

// Tells the gateway this worker could not start (e.g. a registry error), so that it fails bootup
// with the reason instead of waiting.
absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_LOOP_H_
