// ProcessTable: the gateway's record of its worker processes: the MPI jobs they belong to, each
// process's state, which process serves which worker, and the tasks sent to each whose results
// have not come back.
//
// A worker (0..N-1) is what the scheduler hands tasks to; a process is an MPI process that serves
// one. Lost workers are replaced by a whole new job, one process per worker (worker i at rank i),
// so that a gang's members are always of one job and make their communicator from its world.
// The table holds communicators as values only and makes no MPI call, so it is tested without MPI.
//
// Thread-safety: not thread-safe; the gateway's MPI thread owns it.
#ifndef MPIGATE_SERVER_PROCESS_TABLE_H_
#define MPIGATE_SERVER_PROCESS_TABLE_H_

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

// One MPI job of workers: the first spawn (world mode: ranks 1..N), or a later one that replaces
// lost workers.
struct Cohort {
  // The parent side of the spawn intercommunicator, or MPI_COMM_WORLD in world mode.
  MPI_Comm comm = MPI_COMM_NULL;
  // Its worker i is process first_process + i.
  int first_process = 0;
  // It lost a process: its communicator must never be disconnected.
  bool broken = false;
  // A replacement job that failed to start (a worker's error or initializer): being stopped.
  bool rejected = false;
  // Counted as a failed replacement: a job whose processes fail one after the other counts once,
  // so that the pause before the next attempt grows per attempt, not per process.
  bool counted_failure = false;
  // Its processes not gone yet: only those jobs are polled. A job with none left is over, and the
  // next job takes its place (and its processes'), so that the table does not grow with every
  // replacement.
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
  // How many processes had this slot before it: tells a late report of an earlier one (WatchId).
  uint32_t generation = 0;
  // When it was spawned: it must say hello within the bootup timeout.
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
  // Watched by its pid (a process on this host), or by its heartbeats (one on another host).
  bool watched = false;
  bool heartbeats = false;
  absl::Time up_since;
  // Why the gateway killed it, if it did.
  std::string killed_because;
};

class ProcessTable {
 public:
  // `workers` processes per job; worker 0 of a job is at rank `rank_offset` of its communicator
  // (0 after a spawn, 1 in world mode, where rank 0 is the gateway).
  ProcessTable(int workers, int rank_offset);
  ProcessTable(const ProcessTable&) = delete;
  ProcessTable& operator=(const ProcessTable&) = delete;

  int workers() const { return workers_; }
  int rank_offset() const { return rank_offset_; }

  // Records a job just started through `comm` at `now`: its processes boot, serving no worker
  // yet, and it becomes the target that workers move onto. It takes the place of a job that is
  // over (every process gone, its communicator disconnected or never to be), if there is one.
  // Returns its cohort index.
  int AddCohort(MPI_Comm comm, absl::Time now);

  Cohort& cohort(int c) { return cohorts_[static_cast<size_t>(c)]; }
  const Cohort& cohort(int c) const { return cohorts_[static_cast<size_t>(c)]; }
  std::vector<Cohort>& cohorts() { return cohorts_; }
  int cohort_count() const { return static_cast<int>(cohorts_.size()); }
  Process& process(int id) { return processes_[static_cast<size_t>(id)]; }
  const Process& process(int id) const { return processes_[static_cast<size_t>(id)]; }
  int process_count() const { return static_cast<int>(processes_.size()); }
  // The process that sent a message of rank `source` of cohort `c`'s communicator.
  int ProcessAt(int c, int source) const {
    return cohorts_[static_cast<size_t>(c)].first_process + source - rank_offset_;
  }

  // The newest job, which workers move onto; -1 before the first.
  int target() const { return target_; }
  // Processes booting or stopping: their hellos and goodbyes are polled for.
  int awaiting() const { return awaiting_; }
  // Every change of a process's state goes through here, which keeps awaiting() and the jobs'
  // live counts.
  void SetState(Process& process, Process::State state);

  // Whether workers may have to move to other processes: set by every change of a process's
  // state and every new job, cleared by Settled() once every worker is on the target job, so
  // that the dispatch loop does not look each round while the pool is whole.
  bool unsettled() const { return unsettled_; }
  void Settled() { unsettled_ = false; }
  // Counts changes of states, jobs and who serves which worker: what the pool's degraded reason
  // is made from (see PoolHealth) changed when it has.
  uint64_t changes() const { return changes_; }

  // The process serving `worker`, or -1 (nullptr) while the worker is out of service.
  int ProcessIdOf(int worker) const { return worker_process_[static_cast<size_t>(worker)]; }
  Process* ProcessOf(int worker) {
    const int id = worker_process_[static_cast<size_t>(worker)];
    return id < 0 ? nullptr : &processes_[static_cast<size_t>(id)];
  }
  // Process `id` serves `worker` from now on; -1 takes the worker out of service.
  void Serve(int worker, int id);
  const std::vector<int>& worker_processes() const { return worker_process_; }
  // Workers out of service.
  int WorkersDown() const;
  // When the youngest process serving a worker came up; InfinitePast if none does.
  absl::Time YoungestUp() const;
  // Processes told to shut down whose goodbye has not come.
  int Stopping() const;
  // The communicator through which to abort every job: the newest job's, or another still
  // connected (a rejected job's is null by now, and MPI_Abort needs a valid one), else
  // MPI_COMM_WORLD.
  MPI_Comm AbortComm() const;
  // Whether a process the gateway killed has not ended yet.
  bool KilledStillEnding() const;

  // Tasks sent to processes whose results have not come back, in all.
  int in_flight() const { return in_flight_; }
  void Sent(Process& process) {
    ++process.in_flight;
    ++in_flight_;
  }
  void Answered(Process& process) {
    --process.in_flight;
    --in_flight_;
  }
  // A lost process answers none of its tasks.
  void DropInFlight(Process& process) {
    in_flight_ -= process.in_flight;
    process.in_flight = 0;
  }

  // The id under which the watches know process `id`: its slot and generation, so that a report
  // about an earlier process of the slot is told apart (ProcessOfWatchId: -1).
  uint64_t WatchId(int id) const;
  int ProcessOfWatchId(uint64_t watch_id) const;

  // Where a process gets its frames: its job's communicator and its rank there.
  MPI_Comm CommOf(const Process& process) const {
    return cohorts_[static_cast<size_t>(process.cohort)].comm;
  }
  int RankOf(const Process& process) const { return process.index + rank_offset_; }

  // "worker W on HOST (pid P)", or for a process that serves no worker, "replacement process ...".
  static std::string Describe(const Process& process);

 private:
  const int workers_;
  const int rank_offset_;
  std::vector<Cohort> cohorts_;
  std::vector<Process> processes_;
  std::vector<int> worker_process_;
  int target_ = -1;
  int jobs_added_ = 0;
  int awaiting_ = 0;
  int in_flight_ = 0;
  bool unsettled_ = false;
  uint64_t changes_ = 0;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_PROCESS_TABLE_H_
