// What mpigate-server does before it starts its pool: finds the files the workers need, and sets
// the environment Open MPI and glibc read at a process's start (inherited by the daemon, the
// workers and their task runners).
//
// Thread-safety: call from main() before the pool starts; these read the file system and change
// the process's environment.
#ifndef MPIGATE_SERVER_POOL_LAUNCH_H_
#define MPIGATE_SERVER_POOL_LAUNCH_H_

#include "absl/status/statusor.h"
#include "server/mpi_pool.h"
#include "server/server_config.h"

namespace mpigate::server {

// `config.pool` with the files found: the worker binary (when spawning), the task runner (the
// explicit one, checked; in world mode one next to this program; else empty, each worker finds
// its own), and the Python runtime as a task library (per --python: with `auto`, none if it
// cannot be found or loaded here; with `on`, FAILED_PRECONDITION).
absl::StatusOr<MpiWorkerPool::Options> PoolOptionsWithFiles(const ServerConfig& config);

// Open MPI's settings for a pool (as root, oversubscribed, loss-tolerant; users' own win), and,
// for a pool on this host only, its listeners on loopback: returns whether this process is to
// open the loopback scope around MPI_Init (common/loopback_listeners.h). Nothing under MPICH.
bool PrepareMpiEnvironment(const MpiWorkerPool::Options& options);

// Transparent huge pages for the large buffers of the processes this one starts (GLIBC_TUNABLES),
// unless the user set glibc.malloc.hugetlb.
void UseHugePagesInWorkers();

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_POOL_LAUNCH_H_
