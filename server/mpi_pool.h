// MpiWorkerPool: the gateway's MPI side, and the coordinator of its parts. It owns the one thread
// that makes every MPI call in the gateway process: that thread initialises MPI, starts the
// workers (server/worker_launch.h), tells the Scheduler whether the pool is ready or broken, runs
// the dispatch loop (tasks and interrupts out, results and progress back: server/task_pump.h)
// until told to stop, then shuts the workers down and finalises MPI.
//
// Idle cost: while no task is in flight the thread blocks on the scheduler's condition and makes
// no MPI call; while tasks are in flight it polls, waiting between polls as wire::PollBackoff says,
// and a local worker that may find it asleep rings its bell with a result (server/gateway_bell.h).
//
// Lost workers: Open MPI reports a dead process through no MPI call, so a WorkerWatch sees local
// worker processes end and a SilenceWatch sees remote ones stop their heartbeats; a remote one
// whose heartbeats are quiet (it runs a gang function) is looked up in Open MPI's runtime instead
// (RuntimeWatch). A lost process is never sent to again, the scheduler is told
// (Scheduler::WorkerLost), the other ranks of a gang it was in are killed (no MPI call would
// release them: by pid on this host, by the runtime on others), and the pool heals: it spawns a
// whole new job, so that gangs are still made within one job's world, and moves each worker onto
// it (a lost one at once, the others when idle). A job that lost a process is never
// disconnected, since that collective would never end. Replacements that keep failing wait
// longer each time (server/pool_health.h). In world mode nothing can be spawned: the pool serves
// on with the workers it has (Options::every_worker_lost when none is left).
//
// Thread-safety: Start(), Serve() and Join() are called by one controlling thread, in that order;
// every other method runs on the MPI thread.
#ifndef MPIGATE_SERVER_MPI_POOL_H_
#define MPIGATE_SERVER_MPI_POOL_H_

#include <functional>
#include <memory>
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
#include "server/gateway_bell.h"
#include "server/pool_health.h"
#include "server/process_ends.h"
#include "server/process_table.h"
#include "server/runtime_watch.h"
#include "server/scheduler.h"
#include "server/silence_watch.h"
#include "server/task_pump.h"
#include "server/worker_launch.h"
#include "server/worker_watch.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "worker/worker_options.h"

namespace mpigate::server {

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
    // World mode: called on the MPI thread, once, when every worker has been lost (nothing can
    // replace them); Join() then returns this error. The pool serves nothing more, and waits for
    // StopDispatch().
    std::function<void(const absl::Status&)> every_worker_lost;
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
  // runs on the MPI thread. The scheduler must outlive Join(). `degraded` (if set) is called on
  // the MPI thread whenever why the pool is degraded changes, as Scheduler::SetDegraded is told:
  // "" once it is whole again.
  void Serve(Scheduler* scheduler, std::function<void(const absl::Status&)> booted,
             std::function<void(const std::string&)> degraded = nullptr);

  // Waits for the MPI thread to shut the workers down and finalise MPI; returns how that went.
  absl::Status Join();

 private:
  void ThreadMain(Options options);
  // The rest runs on the MPI thread.
  // Starts the first job and waits for its hellos; tells the scheduler the pool is ready, or why
  // it is broken.
  absl::Status Boot(Scheduler& scheduler);
  // Starts a job of workers (world mode: takes the ranks mpiexec started), which then boot.
  absl::Status StartJob();
  // Runs the dispatch loop until the scheduler stops dispatching.
  absl::Status Dispatch(Scheduler& scheduler);
  // Takes what one round of polls finds from every job with a process that may still send;
  // `after_wait`: the thread has just waited, so anything may have come meanwhile.
  absl::Status Poll(TaskPump& pump, wire::PollBackoff& backoff, bool poll, bool after_wait);
  // A process said hello: it is up, watched if local (else asked for heartbeats), its doorbell
  // rung once.
  void Register(int process, wire::HelloFrame hello);
  // A replacement process said hello: Register(), or if it cannot serve (ReplacementFailure),
  // its whole job is rejected.
  void TakeHello(int process, wire::HelloFrame hello);
  // A heartbeat came from the process.
  absl::Status TakeHeartbeat(int process, const std::string& bytes);

  // Loss and healing (see "Lost workers" above).
  // Handles the processes watch_ saw end, those silence_ found silent and those the runtime says
  // ended or was asked to kill: their tasks are lost.
  void HandleEnded(Scheduler& scheduler);
  // The quiet remote processes that Open MPI's runtime says have ended (asked at most every
  // kRuntimeAskInterval), and those it was asked to kill, with how each ended as far as known.
  std::vector<std::pair<int, std::string>> AskRuntime();
  // Kills the other ranks of the gang that lost `worker`, which MPI would never release from a
  // collective with the dead one.
  void KillGangMates(int worker, const std::vector<int>& mates);
  // Gives up processes that have not said hello within Options::bootup_timeout of their spawn
  // (they end themselves: worker::WorkerOptions::hello_timeout); a booting one's job is rejected.
  void ExpireBooting();
  // Gives up a process that has not said hello: nothing more is sent to it or taken from it, and
  // its job is never disconnected (it would not take part).
  void GiveUp(int process);
  // A replacement job failed (a hello's error, or a process that died young): the pause before
  // the next spawn grows, once per job.
  void CountReplaceFailure(Cohort& cohort);
  // A replacement job failed to start (`who` said `failure`): it counts as a failed replacement,
  // and the whole job goes (gangs are made within one job, which must be whole): those of its
  // processes that serve no worker now, the others once a new job takes over (TakeOver).
  void RejectJob(int cohort, absl::string_view who, absl::string_view failure);
  // Whether workers need a new job: the newest lost a process, or failed to start.
  bool SpawnDue() const;
  // Spawns a replacement job if SpawnDue(), the pause after failures has passed and every local
  // process seen to end has been reaped.
  void MaybeSpawn(Scheduler& scheduler);
  // Moves workers onto the processes of the newest whole job: those out of service at once,
  // the others when idle, stopping their old process.
  void TakeOver(Scheduler& scheduler);
  // Tells the scheduler why the pool is degraded, if that changed.
  void UpdateDegraded(Scheduler& scheduler);
  // Why the pool is degraded, if that may have changed and did (logged, and told to
  // degraded_changed_): for the scheduler.
  std::optional<std::string> DegradedChange();

  // Starts sending the process its shutdown (told to skip the disconnect if its job lost a
  // process); it serves no worker from now on. Only for a process whose worker another process
  // serves, or is out of service, or when the pool stops.
  void SendShutdown(int process);
  // A stopped or lost process is gone: nothing more is sent to it or taken from it.
  void MarkGone(int process);
  // Disconnects each rejected job whose processes are all gone.
  void DisconnectRejected();
  // Shuts every process still running down and waits for each to answer (or end), then
  // disconnects every job that lost no process (spawn mode).
  absl::Status StopWorkers();
  // Ends the job when workers cannot be stopped in order. Does not return.
  [[noreturn]] void AbortWorkers(const absl::Status& why);

  std::thread thread_;
  // Set by the MPI thread once MPI is initialised (or failed to be).
  absl::Notification started_;
  std::optional<absl::StatusOr<Started>> start_result_;
  // Set by Serve(); the MPI thread waits for it after a successful start.
  absl::Notification serve_;
  Scheduler* scheduler_ = nullptr;
  std::function<void(const absl::Status&)> booted_;
  std::function<void(const std::string&)> degraded_changed_;
  absl::Status final_status_;

  // Owned by the MPI thread.
  Options options_;
  SpawnPlan spawn_plan_;
  std::optional<ProcessTable> table_;
  std::optional<PoolHealth> health_;
  // Null if it could not be opened: then the workers poll, as for a gateway on another host.
  std::unique_ptr<GatewayBell> bell_;
  // Every non-blocking send to the workers, so that those to a process found gone are abandoned.
  wire::PendingSends sends_;
  // The workers' functions (FunctionNames), which a replacement must register too.
  std::string functions_;
  bool every_worker_lost_ = false;
  // This host's name and shared memory domain: a worker with both is watched by pid.
  std::string host_;
  std::string shared_memory_domain_;
  std::optional<WorkerWatch> watch_;
  std::optional<SilenceWatch> silence_;
  UnreapedEnds unreaped_;
  // Open MPI's runtime; null where it cannot be asked (MPICH, or it failed).
  std::unique_ptr<RuntimeWatch> runtime_;
  absl::Time next_runtime_ask_ = absl::InfinitePast();
  // Remote processes the runtime was asked to kill: its table keeps them "running", so they are
  // taken as lost at the next HandleEnded.
  std::vector<int> runtime_killed_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MPI_POOL_H_
