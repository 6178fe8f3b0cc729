// RunTask: runs one task frame against a registry and builds its result frame.
//
// Never throws and never lets a task's failure escape: an unknown function, an error status, or a
// C++ exception thrown by the function all become an error in the result (an exception keeps its
// type and message). A chunk runs its items in order, each succeeding or failing on its own.
//
// Thread-safety: a pure function of its arguments; safe from any thread.
#ifndef MPIGATE_WORKER_TASK_RUNNER_H_
#define MPIGATE_WORKER_TASK_RUNNER_H_

#include "wire/frames.pb.h"
#include "worker/registry.h"

namespace mpigate::worker {

wire::ResultFrame RunTask(const FunctionRegistry& registry, const TaskContext& context,
                          const wire::TaskFrame& task);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_RUNNER_H_
