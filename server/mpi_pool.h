// MpiWorkerPool: the gateway's MPI side. Owns the one thread that makes every MPI call in the
// gateway process: it initialises MPI, starts the workers (MPI_Comm_spawn, or in world mode the
// ranks 1..N that mpiexec started), waits for each to say hello, tells the Scheduler whether the
// pool is ready or broken, then moves tasks from the Scheduler to workers (and interrupts of
// running tasks), and results and progress reports back, until told to stop, and finally shuts
// the workers down and finalises MPI.
//
// Batches: the small task frames one worker gets in one dispatch round go in one MPI message
// (Tag::kTasks), in the order the scheduler handed them out, as results a worker has several of
// come back in one (Tag::kResults).
//
// Idle cost: while no task is in flight the thread blocks on the scheduler's condition and makes
// no MPI call at all; while tasks are in flight it polls with MPI_Improbe, waiting between polls
// as wire::PollBackoff says, and at least 100 us while workers hold backlogs (prefetched tasks).
//
// Shared memory: a task whose input is in a shared memory object (TaskFrame.shared_payload) goes
// as it is to a worker that sees the gateway's shared memory (HelloFrame.shared_memory_domain);
// for any other worker this thread reads the object into the frame, and asks for the result in
// the frame.
//
// Thread-safety: Start(), Serve() and Join() are called by one controlling thread, in that order.
#ifndef MPIGATE_SERVER_MPI_POOL_H_
#define MPIGATE_SERVER_MPI_POOL_H_

#include <mpi.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"
#include "server/scheduler.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "worker/worker_process.h"

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
    // Workers to spawn; 0 to decide with ResolveWorkerCount. In world mode, if set, it must
    // match the ranks mpiexec started.
    int workers = 0;
    // World mode: no spawn; rank 0 of MPI_COMM_WORLD is the gateway, ranks 1..N the workers.
    bool world = false;
    // Spawn mode: path of the mpigate-worker executable.
    std::string worker_binary;
    // What every worker is told: initializer, environment, working directory.
    worker::WorkerOptions worker_options;
    // Spawn mode: MPI_Info keys and values for MPI_Comm_spawn (e.g. "host", "wdir").
    std::vector<std::pair<std::string, std::string>> spawn_info;
    // How long to wait for every worker to say hello (after running its initializer).
    absl::Duration bootup_timeout = absl::Seconds(60);
  };

  // What Start() found.
  struct Started {
    // The pool's size; its workers are still starting.
    int workers = 0;
    // World mode, ranks 1..N: this process was a worker, has finished serving and finalised MPI;
    // it should exit with this code.
    std::optional<int> worker_exit_code;
  };

  MpiWorkerPool() = default;
  // Joins the MPI thread if it is still running.
  ~MpiWorkerPool();
  MpiWorkerPool(const MpiWorkerPool&) = delete;
  MpiWorkerPool& operator=(const MpiWorkerPool&) = delete;

  // Starts the MPI thread and returns once MPI is initialised and the pool's size is known.
  absl::StatusOr<Started> Start(const Options& options);

  // Lets the MPI thread start the workers and then dispatch `scheduler`'s tasks until
  // scheduler->StopDispatch(). Once the workers are up it calls scheduler->PoolReady() (or
  // PoolBroken() if an initializer failed) and then `booted` with OK; if they cannot be started
  // at all it calls PoolBroken() and `booted` with the error, and the pool is finished. `booted`
  // runs on the MPI thread. The scheduler must outlive Join().
  void Serve(Scheduler* scheduler, std::function<void(const absl::Status&)> booted);

  // Waits for the MPI thread to shut the workers down and finalise MPI; returns how that went.
  absl::Status Join();

 private:
  void ThreadMain(Options options);
  // Runs on the MPI thread.
  absl::StatusOr<int> Init(const Options& options);
  absl::Status Boot(const Options& options, Scheduler& scheduler);
  absl::Status Spawn(const Options& options);
  absl::StatusOr<std::map<int, wire::HelloFrame>> AwaitHellos(absl::Duration timeout);
  absl::Status Dispatch(Scheduler& scheduler);
  // Tells each worker in `in_loop` to stop and waits for each to answer, dropping results still
  // on their way, then disconnects from the workers (spawn mode).
  absl::Status StopWorkers(const std::vector<int>& in_loop);
  // Rings each worker's doorbell once, to tell it that this gateway can (wire/doorbell.h), and
  // remembers those that rang.
  void ConnectDoorbells(const std::map<int, wire::HelloFrame>& hellos);
  // After a frame was sent to `worker`: wakes it if it waits on its doorbell.
  void RingDoorbell(int worker);
  // Before `frame` goes to `worker`: carries its shared memory input in the frame, and asks for
  // the result there, if the worker does not share the gateway's shared memory.
  absl::Status FitSharedMemory(int worker, wire::TaskFrame& frame) const;
  // Ends the job when workers cannot be stopped in order. Does not return.
  [[noreturn]] void AbortWorkers(const absl::Status& why);

  int RankOf(int worker) const { return worker + rank_offset_; }
  int WorkerAt(int rank) const { return rank - rank_offset_; }

  std::thread thread_;
  // Set by the MPI thread once MPI is initialised (or failed to be).
  absl::Notification started_;
  std::optional<absl::StatusOr<Started>> start_result_;
  // Set by Serve(); the MPI thread waits for it after a successful start.
  absl::Notification serve_;
  Scheduler* scheduler_ = nullptr;
  std::function<void(const absl::Status&)> booted_;
  absl::Status final_status_;

  // Owned by the MPI thread.
  // The parent side of the spawn intercommunicator, or MPI_COMM_WORLD in world mode.
  MPI_Comm workers_comm_ = MPI_COMM_NULL;
  // Rank of worker 0 in workers_comm_: 0 after a spawn, 1 in world mode.
  int rank_offset_ = 0;
  int worker_count_ = 0;
  std::optional<wire::DoorbellRinger> ringer_;
  // Each worker's doorbell address, by worker; empty for one this gateway cannot ring.
  std::vector<std::string> doorbells_;
  // Whether each worker sees the gateway's shared memory, by worker.
  std::vector<bool> shares_memory_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MPI_POOL_H_
