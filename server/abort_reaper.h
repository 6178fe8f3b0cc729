// StartAbortReaper: makes sure that nothing the gateway started outlives an abort of its pool.
//
// MPI_Abort ends the gateway at once; Open MPI's daemon (a singleton's orted, the gateway's
// child) then kills the workers and ends itself. It was seen to hang for good in its own finalize
// instead (PMIx_server_finalize waiting on its progress thread, which waited on a lock: a race in
// PMIx with the events of the processes just killed; 1 of 24 aborts of worker_heal_test's case,
// on 2 loaded cores), every worker already gone: a daemon left behind, and whoever waits for the
// service's processes to end (a batch step, a test) waiting for ever. So before the abort the
// gateway starts a reaper, a process of its own that outlives it: once the gateway has ended, the
// reaper waits for the processes it was given and for the gateway's children (the daemon) to
// end, kills with SIGKILL those still there after `patience`, says so on stderr, and ends. A
// gateway still there `patience` after the call (MPI_Abort waits for the daemon to answer, and a
// daemon that is stopped or hung never does) is killed first.
//
// Thread-safety: call once, from any thread, just before the process ends (the child it forks
// from this threaded process makes async-signal-safe calls only).
#ifndef MPIGATE_SERVER_ABORT_REAPER_H_
#define MPIGATE_SERVER_ABORT_REAPER_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace mpigate::server {

// `processes` are pids of this host (the local workers); those already gone are left out. Each
// is held by a pidfd from the call on, so a pid reused after its process ended is never signalled.
absl::Status StartAbortReaper(const std::vector<pid_t>& processes, absl::Duration patience);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_ABORT_REAPER_H_
