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
// Lost workers: Open MPI 4.1 reports a dead process through no MPI call (docs/worker-loss.md), so
// a WorkerWatch sees local worker processes end, and a worker on another host, which cannot be
// watched by its pid, is asked for heartbeats (wire::HeartbeatFrame): one silent for a second is
// taken as lost (SilenceWatch). A replacement that does not say hello within the bootup timeout
// is given up as a failed one (it ends itself). The pool then never sends to that process again,
// drops what still comes from it, tells the scheduler (Scheduler::WorkerLost: its tasks are
// retried or fail ABORTED), kills the other members of a gang it was in (no MPI call would ever
// release them; spawn mode only), and heals: it spawns a whole new job of workers, one process per
// worker as at the start, so that gangs are still made within one job (MPI_COMM_WORLD of the
// workers, worker i = rank i), and moves each worker onto its new process: a lost one at once,
// the others as soon as they are idle, stopping the old process. A job that lost a process is
// never disconnected (the collective would never end), and its survivors are told to skip it
// too. When replacements keep failing (a spawn error, a failed initializer, a death soon after
// starting) the next attempt waits longer, up to a minute. The scheduler's PoolStatus says why
// the pool is degraded meanwhile. In world mode nothing can be spawned: the pool serves on with
// the workers it has, and when every one is lost it says so (Options::every_worker_lost).
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
#include "server/silence_watch.h"
#include "server/worker_watch.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
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
  // One MPI job of workers: the first spawn (world mode: ranks 1..N), or a later one that replaces
  // lost workers. Each has a process for every worker, worker i at rank i (plus rank_offset_), so
  // that a gang's members, all of one job, make their communicator from that job's world.
  struct Cohort {
    // The parent side of the spawn intercommunicator, or MPI_COMM_WORLD in world mode.
    MPI_Comm comm = MPI_COMM_NULL;
    // Its worker i is processes_[first_process + i].
    int first_process = 0;
    // It lost a process: its communicator must never be disconnected.
    bool broken = false;
    // A replacement job that failed to start (a worker's error or initializer): being stopped.
    bool rejected = false;
    // Counted in replace_failures_: a job whose processes fail one after the other counts once,
    // so that the pause before the next attempt grows per attempt, not per process.
    bool counted_failure = false;
    // Its processes not gone yet: only those jobs are polled. A job with none left is over, and
    // the next replacement job takes its place (and its processes'), so that the bookkeeping does
    // not grow with every replacement.
    int live = 0;
    // Spawned to replace lost workers (not the pool's first job).
    bool replacement = false;
  };
  // One worker process.
  struct Process {
    enum class State {
      // Spawned; its hello has not come.
      kBooting,
      // Serving `worker`, or waiting to take it over.
      kUp,
      // Told to shut down; its goodbye has not come.
      kStopping,
      // Said goodbye, or was lost: nothing is sent to it and what comes from it is dropped.
      kGone,
    };
    int cohort = 0;
    // Its index in its cohort: the worker it is started for.
    int index = 0;
    // How many processes had this slot before it: tells a late report of an earlier one (see
    // WatchId).
    uint32_t generation = 0;
    // When it was spawned: it must say hello within Options::bootup_timeout.
    absl::Time spawned;
    State state = State::kBooting;
    // The worker it serves, or -1.
    int worker = -1;
    wire::HelloFrame hello;
    // Task frames sent to it whose results have not come back.
    int in_flight = 0;
    // Its doorbell, if this gateway can ring it; whether it sees the gateway's shared memory.
    std::string doorbell;
    bool shares_memory = false;
    // Watched by watch_ (a process on this host), or by silence_ (its heartbeats: one on
    // another host).
    bool watched = false;
    bool heartbeats = false;
    absl::Time up_since;
    // Why the gateway killed it, if it did.
    std::string killed_because;
  };

  void ThreadMain(Options options);
  // Runs on the MPI thread.
  absl::StatusOr<int> Init(const Options& options);
  absl::Status Boot(const Options& options, Scheduler& scheduler);
  // Spawns a job of worker_count_ processes (a new cohort), which then boot.
  absl::Status Spawn(const Options& options);
  // Waits for the first cohort's hellos.
  absl::StatusOr<std::map<int, wire::HelloFrame>> AwaitHellos(absl::Duration timeout);
  absl::Status Dispatch(Scheduler& scheduler);
  // A process said hello: it is up, watched if local, its doorbell rung once.
  void Register(int process, wire::HelloFrame hello);
  // A replacement process said hello: Register(), or if it failed to start (or its initializer
  // did, or it has other functions), its whole job is rejected and stopped.
  void TakeHello(int process, wire::HelloFrame hello);
  // A replacement job failed (a hello's error, or a process that died young): the pause before
  // the next spawn grows, once per job.
  void CountReplaceFailure(Cohort& cohort);
  // A replacement job failed to start (`who` said `failure`): it counts as a failed replacement,
  // and the whole job goes (gangs are made within one job, which must be whole): those of its
  // processes that serve no worker now, the others once a new job takes over (TakeOver).
  void RejectJob(int cohort, absl::string_view who, absl::string_view failure);
  // Handles the processes watch_ saw end and those silence_ found silent (see "Lost workers"
  // above); `in_flight` loses the tasks sent to them.
  void HandleEnded(Scheduler& scheduler, int& in_flight);
  // Gives up processes that have not said hello within Options::bootup_timeout of their spawn:
  // nothing is sent to them (they end themselves: worker::WorkerOptions::hello_timeout), their
  // job is never disconnected, and if they were booting their job is rejected.
  void ExpireBooting();
  // Gives up a process that has not said hello: nothing more is sent to it or taken from it,
  // and its job is never disconnected (it would not take part).
  void GiveUp(int process);
  // A heartbeat came from the process.
  absl::Status TakeHeartbeat(int process, const std::string& bytes);
  // The id under which watch_ and silence_ know the process: its slot and generation, so that
  // a report about an earlier process of the slot is told apart (ProcessOfWatchId: -1).
  uint64_t WatchId(int process) const;
  int ProcessOfWatchId(uint64_t watch_id) const;
  // Whether workers need a new job: the newest lost a process, or failed to start.
  bool SpawnDue() const;
  // Whether Open MPI's daemon has reaped every local process seen to end (or kReapPatience has
  // passed): a spawn while it handles a death left new workers stuck in MPI_Init, and the
  // gateway with them in MPI_Comm_spawn, for good (tests/worker_heal_test, 1 run in about 25).
  bool EndsReaped();
  // Spawns a replacement job if SpawnDue() and the pause after failures has passed.
  void MaybeSpawn(Scheduler& scheduler);
  // Moves workers onto the processes of the newest whole job: those out of service at once,
  // the others when idle, stopping their old process.
  void TakeOver(Scheduler& scheduler);
  // Tells the scheduler why the pool is degraded, if that changed.
  void UpdateDegraded(Scheduler& scheduler);
  // Starts sending the process its shutdown (told to skip the disconnect if its job lost a
  // process); it serves no worker from now on. Only for a process whose worker another process
  // serves, or is out of service, or when the pool stops.
  void SendShutdown(int process);
  // A stopped or lost process is gone: nothing more is sent to it or taken from it.
  void MarkGone(int process);
  // Every change of a process's state goes through here, which keeps awaiting_ and the cohorts'
  // live counts.
  void SetState(Process& process, Process::State state);
  // Disconnects each rejected job whose processes are all gone.
  void DisconnectRejected();
  // Shuts every process still running down and waits for each to answer (or end), then
  // disconnects every job that lost no process (spawn mode).
  absl::Status StopWorkers();
  // After a frame was sent to `worker`: wakes it if it waits on its doorbell.
  void RingDoorbell(int worker);
  // Before `frame` goes to `worker`: carries its shared memory input in the frame, and asks for
  // the result there, if the worker does not share the gateway's shared memory.
  absl::Status FitSharedMemory(int worker, wire::TaskFrame& frame) const;
  // Ends the job when workers cannot be stopped in order. Does not return.
  [[noreturn]] void AbortWorkers(const absl::Status& why);
  // "worker W on HOST (pid P)", or for a process that serves no worker, "replacement process ...".
  std::string Describe(const Process& process) const;
  // The process serving `worker`, or nullptr while the worker is out of service.
  Process* ProcessOf(int worker);
  // Where a process gets its frames: its job's communicator and its rank there.
  MPI_Comm CommOf(const Process& process) const { return cohorts_[process.cohort].comm; }
  int RankOf(const Process& process) const { return process.index + rank_offset_; }

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
  // Rank of worker 0 in a cohort's communicator: 0 after a spawn, 1 in world mode.
  int rank_offset_ = 0;
  int worker_count_ = 0;
  std::optional<wire::DoorbellRinger> ringer_;
  // Every non-blocking send to the workers, so that those to a process found gone are abandoned.
  wire::PendingSends sends_;
  // The workers' functions (FunctionNames), which a replacement must register too.
  std::string functions_;
  std::vector<Cohort> cohorts_;
  std::vector<Process> processes_;
  // Processes booting or stopping: their hellos and goodbyes are polled for.
  int awaiting_ = 0;
  // Workers may have to move to other processes (see TakeOver); false while the pool is whole
  // and settled, so that dispatch does not look each round.
  bool consolidating_ = false;
  // The process serving each worker, by worker; -1 while it is out of service.
  std::vector<int> worker_process_;
  // The cohort workers move onto (the newest spawned); -1 before the first.
  int target_ = -1;
  // Replacements that failed in a row, and when the next may be spawned.
  int replace_failures_ = 0;
  absl::Time next_spawn_ = absl::InfinitePast();
  // The last loss, for the degraded reason; and that reason as last told to the scheduler.
  std::string last_loss_;
  std::string degraded_;
  // Something the degraded reason depends on changed; else it is rebuilt only when it counts
  // time down (degraded_refresh_).
  bool degraded_dirty_ = true;
  absl::Time degraded_refresh_ = absl::InfiniteFuture();
  // Jobs spawned so far.
  int spawned_jobs_ = 0;
  bool every_worker_lost_ = false;
  // This host's name and shared memory domain: a worker with both is watched by pid.
  std::string host_;
  std::string shared_memory_domain_;
  std::optional<WorkerWatch> watch_;
  std::optional<SilenceWatch> silence_;
  // Local processes seen to end that their parent may not have reaped yet, and since when.
  std::vector<std::pair<pid_t, absl::Time>> unreaped_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MPI_POOL_H_
