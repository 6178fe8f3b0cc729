// RunTask and RunGangTask: run one task frame against a registry and build its result frame.
//
// Never throw and never let a task's failure escape: an unknown function, an error status, or a
// C++ exception thrown by the function all become an error in the result (an exception keeps its
// type and message). A chunk (TaskFrame.items) or a range batch (TaskFrame.range) runs its items
// in order, each succeeding or failing on its own, with one ItemResult per item.
//
// Thread-safety: pure functions of their arguments; safe from any thread. A gang function makes
// MPI calls, so RunGangTask belongs on the thread that owns MPI.
#ifndef MPIGATE_WORKER_TASK_RUNNER_H_
#define MPIGATE_WORKER_TASK_RUNNER_H_

#include "wire/frames.pb.h"
#include "worker/gang.h"
#include "worker/registry.h"

namespace mpigate::worker {

// Runs a task on this worker alone: a single call, a chunk or a range batch, whose item i is
// called with context.ForItem(i, ItemSeed(range.base_seed, i)) and the frame's payload.
// FAILED_PRECONDITION if the function is a gang function.
wire::ResultFrame RunTask(const FunctionRegistry& registry, const TaskContext& context,
                          const wire::TaskFrame& task);

// Runs this worker's part of a gang task: one call of the gang function with the frame's
// payload. FAILED_PRECONDITION if the function is not a gang function.
wire::ResultFrame RunGangTask(const FunctionRegistry& registry, const GangContext& context,
                              const wire::TaskFrame& task);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_RUNNER_H_
