// WorkerLoop: the MPI side of a worker process. Announces the worker to the gateway, then receives
// task frames, runs them and sends back result frames until the gateway says shut down.
//
// Idle cost: it polls with MPI_Improbe and sleeps between polls (wire::PollBackoff) instead of
// blocking in MPI_Recv, which in Open MPI busy-polls a whole core.
//
// Thread-safety: Run() makes MPI calls and must run on the thread that initialised MPI; one loop
// per process.
#ifndef MPIGATE_WORKER_WORKER_LOOP_H_
#define MPIGATE_WORKER_WORKER_LOOP_H_

#include <mpi.h>

#include "absl/status/status.h"
#include "worker/registry.h"

namespace mpigate::worker {

class WorkerLoop {
 public:
  // `gateway` is the intercommunicator to the gateway (rank 0 of its remote group).
  WorkerLoop(MPI_Comm gateway, const FunctionRegistry& registry, TaskContext context);
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Sends the hello frame, then serves tasks. Returns OK after a shutdown frame, or the first MPI
  // error.
  absl::Status Run();

 private:
  MPI_Comm gateway_;
  const FunctionRegistry& registry_;
  const TaskContext context_;
};

// Tells the gateway this worker could not start (e.g. a registry error), so that it fails bootup
// with the reason instead of waiting.
absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_LOOP_H_
