// Outcome decoding: how the service's answers about a task (TaskOutcome, TaskRejection, a
// CancelResult that cancelled it) become the Ending its future completes with. Wire codes become
// canonical absl::StatusCodes here, and nowhere else in the client.
//
// Thread-safety: pure functions; the session's reader thread calls them.
#ifndef MPIGATE_CLIENT_INTERNAL_OUTCOME_DECODING_H_
#define MPIGATE_CLIENT_INTERNAL_OUTCOME_DECODING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "client/internal/future_core.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"

namespace mpigate::internal {

// A TaskError.code or TaskRejection.code: 0 becomes `if_ok` (it would turn a failure into a
// success), a number that is not a canonical code becomes UNKNOWN.
absl::StatusCode CodeFromWire(int32_t code, absl::StatusCode if_ok);

// `error` as a Status with CodeFromWire's code and "ExceptionType: message" (or just the message).
absl::Status StatusFromError(const v1::TaskError& error, absl::StatusCode if_ok);

// How `outcome` ended its task: its result and per-item results (moved out of `outcome`), its
// error, or CANCELLED; INTERNAL for an outcome with no end state. A shared result is left in
// `outcome` for the caller to map.
Ending EndingOf(v1::TaskOutcome& outcome);

// Puts the result in shared memory object `shared` into `ending`: a small one (which the
// service may recycle) copied out, a larger one mapped; the object's read error otherwise. The
// caller releases the object afterwards.
void ReadSharedResult(const v1::SharedBytes& shared, Ending& ending);

// A task the service refused (never run): FINISHED with the rejection's code and message.
Ending EndingOf(const v1::TaskRejection& rejection);

// A task a cancel answer says was cancelled before it started.
Ending CancelledBeforeStart(uint64_t task_id);

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_OUTCOME_DECODING_H_
