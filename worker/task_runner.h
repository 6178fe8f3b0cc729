// RunTask and RunGangTask: run one task frame against a registry and build its result frame.
//
// Never throw and never let a task's failure escape: an unknown function, an error status, or a
// C++ exception thrown by the function all become an error in the result (an exception keeps its
// type and message). A chunk (TaskFrame.items) or a range batch (TaskFrame.range) runs its items
// in order, each succeeding or failing on its own, with one ItemResult per item.
//
// The input is the frame's payload, or the shared memory object it names (TaskFrame
// .shared_payload), mapped for the call; one that cannot be mapped fails the task with DATA_LOSS.
// A single call's result of at least TaskFrame.shared_result_min_bytes goes into a new shared
// memory object when the frame gives a prefix for it (ResultFrame.shared_result).
//
// A result is kept within TaskFrame.max_result_bytes (its session's limit on one outcome): a chunk
// or range stops at the item that takes it past the limit, and the task fails with
// RESOURCE_EXHAUSTED naming the limit, so that it never holds much more than the limit; a single
// call's result past it (one not in shared memory) fails the same way.
//
// No MPI here (GangContext is only named): the task runner process (worker/runner_main.cc) runs
// tasks with this without linking MPI.
//
// Thread-safety: pure functions of their arguments; safe from any thread. A gang function makes
// MPI calls, so RunGangTask belongs on the thread that owns MPI.
#ifndef MPIGATE_WORKER_TASK_RUNNER_H_
#define MPIGATE_WORKER_TASK_RUNNER_H_

#include <optional>
#include <string>

#include "wire/frames.pb.h"
#include "worker/registry.h"

namespace mpigate::worker {

// A function run once before any task, wherever task code runs (mpi4py's initializer and
// initargs).
struct Initializer {
  // A registered function name; empty for none.
  std::string function;
  // Its input.
  std::string input;
};

// Runs `initializer` (nothing if it names no function). Returns why it failed, if it did, with a
// message that names the initializer and carries the exception type: it is all the pool's
// status will show.
std::optional<wire::ErrorInfo> RunInitializer(const FunctionRegistry& registry,
                                              const TaskContext& context,
                                              const Initializer& initializer);

// Runs a task on this worker alone: a single call, a chunk or a range batch, whose item i is
// called with context.ForItem(i, ItemSeed(range.base_seed, i)) and the frame's payload.
// FAILED_PRECONDITION if the function is a gang function.
wire::ResultFrame RunTask(const FunctionRegistry& registry, const TaskContext& context,
                          const wire::TaskFrame& task);

// Runs this worker's part of a gang task: one call of the gang function with the frame's
// payload. FAILED_PRECONDITION if the function is not a gang function.
wire::ResultFrame RunGangTask(const FunctionRegistry& registry, const GangContext& context,
                              const wire::TaskFrame& task);

// The result of task `task_key`, interrupted while it waited behind another in a worker's backlog
// (the worker's or its task runner's queue): CANCELLED, and it never ran.
wire::ResultFrame DroppedBeforeStart(uint64_t task_key);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_RUNNER_H_
