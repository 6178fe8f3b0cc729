// A task's run timeout (TaskFrame.run_timeout_ms) as the worker's executors apply it: when a task
// must end by, and the outcome of one that ran past it.
//
// Pure functions; safe from any thread.
#ifndef MPIGATE_WORKER_RUN_TIMEOUT_H_
#define MPIGATE_WORKER_RUN_TIMEOUT_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "wire/frames.pb.h"

namespace mpigate::worker {

// When a task must end by: run_timeout_ms after `start`, or never (0).
absl::Time RunDeadline(uint64_t run_timeout_ms, absl::Time start);

// Makes `result` that of a task that ran past its run timeout, whatever it returned (its key and
// run time stay): DEADLINE_EXCEEDED, saying `how` it was stopped ("interrupted", "killed").
void FailPastDeadline(uint64_t run_timeout_ms, absl::string_view how, wire::ResultFrame& result);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_RUN_TIMEOUT_H_
