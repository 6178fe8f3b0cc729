// GangRunner: runs this worker's part of a gang task (TaskFrame.gang, worker/gang.h) on the MPI
// thread, because a gang function makes MPI calls and MPI belongs to that thread. It makes the
// gang's communicator with the other members (MPI_Comm_create_group over the WorkerGroup), calls
// the function, frees the communicator and answers the gateway.
//
// The MPI thread cannot listen while the function runs, so the function's polls of
// GangContext::cancelled() do it, at most every millisecond: an interrupt sets the task's flag,
// and a shutdown interrupts the call and is answered by the loop when it returns.
//
// Thread-safety: not thread-safe; only the worker's MPI thread may call Run().
#ifndef MPIGATE_WORKER_GANG_RUNNER_H_
#define MPIGATE_WORKER_GANG_RUNNER_H_

#include <mpi.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wire/frames.pb.h"
#include "worker/gateway_link.h"
#include "worker/registry.h"
#include "worker/task_signals.h"

namespace mpigate::worker {

// The communicator that gang communicators are made from: it holds every worker of the pool, and
// may hold other processes (the gateway, in world mode), which need not take part.
struct WorkerGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  // Worker i is rank first_rank + i of `comm`.
  int first_rank = 0;
};

class GangRunner {
 public:
  // `workers` must use MPI_ERRORS_RETURN (wire::ReturnErrors). `rank` and `pool_size` are what
  // the function sees in its TaskContext. `link` and `registry` must outlive the runner.
  GangRunner(GatewayLink& link, WorkerGroup workers, const FunctionRegistry& registry, int rank,
             int pool_size)
      : link_(link), workers_(workers), registry_(registry), rank_(rank), pool_size_(pool_size) {}
  GangRunner(const GangRunner&) = delete;
  GangRunner& operator=(const GangRunner&) = delete;

  // Runs the gang task `frame` (a serialized TaskFrame) and answers the gateway. Returns true,
  // without answering, if the gateway said shut down during the call; an error if MPI fails
  // outside the function.
  absl::StatusOr<bool> Run(absl::string_view frame);

 private:
  GatewayLink& link_;
  const WorkerGroup workers_;
  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  // Reused from task to task.
  wire::TaskFrame task_;
  wire::ResultFrame result_;
  TaskSignals signals_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_GANG_RUNNER_H_
