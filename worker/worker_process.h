// A whole worker process, after MPI_Init: shapes its environment as the pool's options say,
// registers the built-in functions and loads the task libraries, runs the WorkerLoop and finalises
// MPI. Shared by mpigate-worker (spawned workers) and mpigate-server's ranks 1..N in world mode.
//
// Options (worker/worker_options.h) reach spawned workers as command-line arguments; in world mode
// every rank already has the server's own flags.
//
// Thread-safety: RunWorkerProcess makes MPI calls: call it on the thread that initialised MPI.
#ifndef MPIGATE_WORKER_WORKER_PROCESS_H_
#define MPIGATE_WORKER_WORKER_PROCESS_H_

#include <mpi.h>

#include "worker/hello_deadline.h"
#include "worker/worker_options.h"

namespace mpigate::worker {

// Runs the worker whose gateway is rank 0 of `gateway`, then disconnects from it (spawned
// workers; not for MPI_COMM_WORLD) and finalises MPI. Returns the process's exit code; exits the
// process itself if the gateway stopped it while a task was still running. Meets
// `hello_deadline` once the hello, or a startup failure in its place, has gone to the gateway.
int RunWorkerProcess(MPI_Comm gateway, bool disconnect, const WorkerOptions& options,
                     HelloDeadline& hello_deadline);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_PROCESS_H_
