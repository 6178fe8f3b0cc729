// MpiWorkerPool: the gateway's MPI side. Owns the one thread that makes every MPI call in the
// gateway process: it initialises MPI, spawns the workers with MPI_Comm_spawn, waits for each to
// say hello, then moves tasks from the Scheduler to workers and results back until told to stop,
// and finally shuts the workers down and finalises MPI.
//
// Idle cost: while no task is in flight the thread blocks on the scheduler's condition and makes
// no MPI call at all; while tasks are in flight it polls with MPI_Improbe, waiting between polls
// as wire::PollBackoff says.
//
// Thread-safety: Start(), Serve() and Join() are called by one controlling thread, in that order.
#ifndef MPIGATE_SERVER_MPI_POOL_H_
#define MPIGATE_SERVER_MPI_POOL_H_

#include <mpi.h>

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"
#include "server/scheduler.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

// Picks the number of workers: `requested` if positive, else $MPIGATE_MAX_WORKERS (given as
// `env`), else the MPI universe size less the processes already running (`universe_size` minus
// `world_size`, when the universe is larger), else the number of cores. INVALID_ARGUMENT for a
// malformed or non-positive environment value.
absl::StatusOr<int> ResolveWorkerCount(int requested, const char* env,
                                       std::optional<int> universe_size, int world_size, int cores);

class MpiWorkerPool {
 public:
  struct Options {
    // Workers to spawn; 0 to decide with ResolveWorkerCount.
    int workers = 0;
    // Path of the mpigate-worker executable.
    std::string worker_binary;
    // How long to wait for every worker to say hello.
    absl::Duration bootup_timeout = absl::Seconds(60);
    // After StopDispatch(), how long to wait for tasks still running before aborting the workers.
    absl::Duration stop_timeout = absl::Seconds(10);
  };

  // What the workers told the gateway when they started.
  struct PoolInfo {
    int workers = 0;
    std::vector<v1::FunctionInfo> functions;
  };

  MpiWorkerPool() = default;
  // Joins the MPI thread if it is still running.
  ~MpiWorkerPool();
  MpiWorkerPool(const MpiWorkerPool&) = delete;
  MpiWorkerPool& operator=(const MpiWorkerPool&) = delete;

  // Starts the MPI thread and blocks until the workers are up (or failed to start).
  absl::StatusOr<PoolInfo> Start(const Options& options);

  // Lets the MPI thread dispatch `scheduler`'s tasks until scheduler->StopDispatch(). The
  // scheduler must outlive Join().
  void Serve(Scheduler* scheduler);

  // Waits for the MPI thread to shut the workers down and finalise MPI; returns how that went.
  absl::Status Join();

 private:
  void ThreadMain(Options options);
  // Runs on the MPI thread.
  absl::StatusOr<PoolInfo> Boot(const Options& options);
  absl::StatusOr<std::map<int, wire::HelloFrame>> AwaitHellos(absl::Duration timeout);
  absl::Status Dispatch(Scheduler& scheduler, absl::Duration stop_timeout);
  // Sends a shutdown frame to each worker in `running` (those still in their loop), then
  // disconnects from all workers.
  absl::Status StopWorkers(const std::vector<int>& running);
  // Ends the job when workers cannot be stopped in order. Does not return.
  void AbortWorkers(const absl::Status& why);

  std::thread thread_;
  // Set by the MPI thread once the workers are up or failed to start.
  absl::Notification started_;
  std::optional<absl::StatusOr<PoolInfo>> start_result_;
  // Set by Serve(); the MPI thread waits for it after a successful start.
  absl::Notification serve_;
  Scheduler* scheduler_ = nullptr;
  absl::Status final_status_;

  // Owned by the MPI thread.
  MPI_Comm workers_comm_ = MPI_COMM_NULL;
  int worker_count_ = 0;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MPI_POOL_H_
