// InProcessExecutor: runs tasks on a task thread of the worker process (WorkerOptions.in_process),
// one at a time, while the MPI thread listens to the gateway. A function here cannot be killed: a
// forced cancel or the run timeout only sets the task's cancellation flag (a timed-out task fails
// with DEADLINE_EXCEEDED when it returns), and a shutdown during a task abandons it
// (ServeEnd::kShutdownDuringTask).
//
// Thread-safety: the TaskExecutor methods on the MPI thread only; tasks run on the task thread.
#ifndef MPIGATE_WORKER_IN_PROCESS_EXECUTOR_H_
#define MPIGATE_WORKER_IN_PROCESS_EXECUTOR_H_

#include <memory>

#include "wire/frames.pb.h"
#include "worker/gateway_link.h"
#include "worker/registry.h"
#include "worker/task_backlog.h"
#include "worker/task_executor.h"
#include "worker/task_runner.h"
#include "worker/task_signals.h"
#include "worker/task_thread.h"

namespace mpigate::worker {

class InProcessExecutor final : public TaskExecutor {
 public:
  // `link`, `backlog` and `registry` must outlive it; after kShutdownDuringTask the abandoned task
  // still uses `registry` and this executor until the process exits.
  InProcessExecutor(GatewayLink& link, TaskBacklog& backlog, const FunctionRegistry& registry,
                    int rank, int pool_size, Initializer initializer);

  // Runs the initializer on the task thread, like every task, so that thread-local state it sets
  // up is theirs.
  absl::Status Start(wire::HelloFrame& hello) override;
  absl::StatusOr<ServeEnd> Serve() override;
  // Nothing to end: a task cannot be killed, and the task thread ends with the process.
  void Stop() override {}

 private:
  // Shared with the running job, which outlives Serve() if a shutdown abandons it.
  struct Slot {
    wire::TaskFrame task;
    wire::ResultFrame result;
    TaskSignals signals;
  };

  GatewayLink& link_;
  TaskBacklog& backlog_;
  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  const Initializer initializer_;
  const std::shared_ptr<Slot> slot_;
  TaskThread task_thread_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_IN_PROCESS_EXECUTOR_H_
