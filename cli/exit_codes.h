// Exit codes of the `mpigate` command line: the contract scripts rely on. Each command ends with
// exactly one of these (`serve` excepted: it becomes mpigate-server and exits as the server does).
//
// Thread-safety: constants and pure functions.
#ifndef MPIGATE_CLI_EXIT_CODES_H_
#define MPIGATE_CLI_EXIT_CODES_H_

#include "absl/status/status.h"

namespace mpigate::cli {

// The command did what it was asked: every task or item succeeded, status printed, stop asked.
inline constexpr int kExitSuccess = 0;
// A task (`submit`) or at least one item (`map`) failed, was cancelled or timed out.
inline constexpr int kExitTaskFailed = 1;
// The command line is wrong: unknown command or flag, missing or extra argument, bad value.
inline constexpr int kExitUsage = 2;
// The service cannot be reached or does not serve: no endpoint known, nothing listening, no
// answer in time, draining, or the connection lost. Worth a retry later.
inline constexpr int kExitUnavailable = 3;
// Anything else: an input file that cannot be read, output that cannot be written, a server
// binary that cannot be found, an unexpected error of the service.
inline constexpr int kExitError = 4;
// `submit` or `map` was interrupted by SIGINT (Ctrl-C) or SIGTERM while its tasks ran: the tasks
// not yet started were cancelled and the running ones killed (cli/interrupt.h). 128 + SIGINT, what
// a shell reports for a command that SIGINT ended.
inline constexpr int kExitInterrupted = 130;

// For an error reaching or asking the service (connecting, GetPoolStatus, StopService):
// kExitUnavailable for UNAVAILABLE, DEADLINE_EXCEEDED (no answer in time) and NOT_FOUND (which
// endpoint resolution and Executor::Connect return when no endpoint is known), else kExitError.
// kExitSuccess for OK.
int ExitCodeForServiceError(const absl::Status& status);

// For the error of a task or of one map item: kExitUnavailable for UNAVAILABLE (the service
// drained or the connection was lost: the task itself may be fine), else kExitTaskFailed.
// kExitSuccess for OK.
int ExitCodeForTaskError(const absl::Status& status);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_EXIT_CODES_H_
