// Death notes: how a worker process ended, when it ends outside its loop, for the gateway.
//
// Open MPI tells the gateway nothing when a worker dies, and the worker's parent is Open MPI's
// daemon, so the gateway sees only that the process is gone (server/worker_watch.h). A worker
// that is armed writes a short note ("killed by signal 11 (SIGSEGV)", "exited with status 3")
// into a file the gateway reads afterwards (wire::DeathNotePath), when task code running in the
// worker (a gang function, or any function with --isolation=none) crashes it or calls exit().
// SIGKILL (the OOM killer's) leaves no note.
//
// Armed, the worker also turns exit(0) into exit status 1: Open MPI aborts every worker of the
// job when one ends with status 0 without MPI_Finalize, whatever orte_abort_on_non_zero_status
// says, while a non-zero status ends that worker alone.
//
// Thread-safety: Arm and Disarm are called by the worker's main thread, once each; the handlers
// run on whichever thread crashes or exits.
#ifndef MPIGATE_WORKER_DEATH_NOTE_H_
#define MPIGATE_WORKER_DEATH_NOTE_H_

#include <string>

namespace mpigate::worker {

// From now on a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) or an exit() of this process
// writes its note to `path` (none if empty) before the process ends as it would have (the signal's
// default action, the exit status, 1 for 0).
void ArmDeathNote(const std::string& path);

// The process is ending in order: exits are left alone again. Crashes still leave a note.
void DisarmDeathNote();

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_DEATH_NOTE_H_
