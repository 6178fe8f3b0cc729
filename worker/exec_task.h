// exec: the built-in task that runs a program on a worker and returns its exit status, stdout and
// stderr (request and response in proto/mpigate/v1/exec.proto). Registered only when the service
// runs with --allow-exec: it lets any client run any program as the service's user.
//
// The program is started with posix_spawn (vfork semantics: the MPI-initialised worker is never
// duplicated by fork(), which Open MPI warns against), in a process group of its own, with stdin,
// stdout and stderr on pipes, no other descriptor of the worker's, an empty signal mask and default
// signal dispositions. argv[0] is looked up in the worker's PATH, not in a PATH the request sets.
// Its stdin is fed and its output collected by the task thread in one poll() loop. Past the
// request's time limit, or when the task is interrupted, the whole group is killed with SIGKILL
// and reaped; when the program exits, whatever it left running in its group is killed too: no
// program outlives its task (except one that leaves the group, e.g. with setsid).
//
// Thread-safety: the function may run on any thread, several at once.
#ifndef MPIGATE_WORKER_EXEC_TASK_H_
#define MPIGATE_WORKER_EXEC_TASK_H_

#include "worker/task.h"

namespace mpigate::worker {

// The name tasks use.
inline constexpr char kExecFunction[] = "exec";

// `exec`, typed mpigate.v1.ExecRequest -> mpigate.v1.ExecResponse. Errors: INVALID_ARGUMENT for an
// empty argv; NOT_FOUND if the program cannot be found or started; DEADLINE_EXCEEDED past the
// time limit; CANCELLED when interrupted; RESOURCE_EXHAUSTED past max_output_bytes; UNKNOWN for a
// non-zero exit with `check`.
TaskDefinition ExecTaskDefinition();

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_EXEC_TASK_H_
