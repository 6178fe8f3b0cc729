// PeekTask: the few fields of a serialized TaskFrame that a worker needs to route and supervise a
// task, read without decoding the rest; PeekResultKey likewise for a ResultFrame's task key.
//
// A worker that hands tasks to a task runner forwards the TaskFrame's bytes as they came from MPI;
// decoding the whole frame would copy every payload and item once more only to read two numbers.
//
// Thread-safety: a pure function.
#ifndef MPIGATE_WIRE_TASK_PEEK_H_
#define MPIGATE_WIRE_TASK_PEEK_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate::wire {

struct TaskHeader {
  uint64_t task_key = 0;
  uint64_t run_timeout_ms = 0;
  // TaskFrame.gang is not empty: a gang task.
  bool gang = false;
};

// INTERNAL if `bytes` are not a well-formed TaskFrame.
absl::StatusOr<TaskHeader> PeekTask(absl::string_view bytes);

// The task_key of a serialized ResultFrame, read likewise (a worker forwards a runner's results
// as they came); INTERNAL if `bytes` are not a well-formed ResultFrame.
absl::StatusOr<uint64_t> PeekResultKey(absl::string_view bytes);

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_TASK_PEEK_H_
