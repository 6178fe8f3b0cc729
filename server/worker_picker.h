// WorkerPicker: the scheduler's view of its workers: which are idle, which tasks each holds (the
// first runs, the rest wait in its backlog), and which worker takes the next task.
//
// Prefetch: a worker whose tasks are short may hold more than one, up to max_tasks_per_worker,
// so that it never waits for the gateway between two of them. How many follows its recent run
// times (an exponentially weighted mean), so that its backlog holds about prefetch_window of
// work. A worker whose first task has run ten times the window is handed nothing more until that
// task ends: ten, not one, because under load results reach the scheduler in batches, a little
// late, which must not close a worker of short tasks. A worker running a group task is handed
// nothing else.
//
// Thread-safety: none of its own; the scheduler owns one and calls it under its lock.
#ifndef MPIGATE_SERVER_WORKER_PICKER_H_
#define MPIGATE_SERVER_WORKER_PICKER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace mpigate::server {

class WorkerPicker {
 public:
  using TaskKey = uint64_t;

  // What the picker knows of one worker.
  struct Worker {
    // The tasks handed to it, in the order it runs them. Empty while idle.
    std::deque<TaskKey> tasks;
    // It runs a group task, and may be handed nothing else until that ends.
    bool group = false;
    // The weighted mean of its recent single tasks' run times; negative before the first.
    double mean_run_us = -1;
    // How many single tasks it may hold; 1 until its run times are known.
    size_t depth = 1;
    // Since when its first task has run (as far as the scheduler knows), and whether that has
    // been long enough to close it until the task ends.
    absl::Time head_started;
    bool head_overran = false;
    // Busy and may be handed more.
    bool open = false;
    // Out of service (Lose, TakeIdle) until Up().
    bool down = false;
    // The MPI job its process is of, as numbered by the transport (0 for the first). A gang's
    // members make their communicator in their job's world, so they must share one: while the
    // pool replaces lost workers, the survivors' processes and the replacements' are of two.
    int job = 0;
  };

  // Workers 0..workers-1, none idle until MakeAllIdle().
  WorkerPicker(int workers, int max_tasks_per_worker, absl::Duration prefetch_window);
  WorkerPicker(const WorkerPicker&) = delete;
  WorkerPicker& operator=(const WorkerPicker&) = delete;

  int workers() const { return static_cast<int>(workers_.size()); }
  const Worker& worker(int w) const { return workers_[static_cast<size_t>(w)]; }
  // Workers holding a task, idle ones, those out of service, and processes lost since the start.
  size_t busy() const { return busy_; }
  size_t idle() const { return idle_.size(); }
  size_t down() const { return down_; }
  uint64_t lost() const { return lost_; }
  // A worker is idle, or busy and may be handed another single task.
  bool HasRoom() const { return !idle_.empty() || open_ > 0; }

  // Every worker becomes idle; worker 0 is taken first.
  void MakeAllIdle();

  // Picks the workers for a task that needs `count`: that many idle ones (for several, the
  // lowest-numbered, all of one job if `one_job`), or for a single task with no worker idle, the
  // open worker that holds the fewest tasks (the lowest-numbered among equals), closing those
  // whose first task has overrun by `now`. Appends them to `members`; false, picking none, if
  // there are not enough.
  bool Pick(size_t count, bool group, bool one_job, absl::Time now,
            absl::InlinedVector<int, 1>& members);

  // At least `count` workers are idle, of one job if `one_job`: Pick() would take them.
  bool HasIdle(size_t count, bool one_job) const {
    return idle_.size() >= count && (!one_job || !LowestIdle(count, one_job).empty());
  }

  // Hands the task `key` to each of `members` (picked for it) at `now`. True if, as a single
  // task, it waits behind another in its worker's backlog.
  bool Assign(absl::Span<const int> members, TaskKey key, bool group, absl::Time now);

  // Takes `key` off the worker's list; false if the worker does not hold it. If `key` was running
  // with others behind it, `next` is set to the one that runs from `now`, else to 0. The worker
  // goes idle once it holds nothing. Call Learn() or Reopen() after.
  bool Release(int worker, TaskKey key, absl::Time now, TaskKey& next);

  // Learns from a single task's run time how many tasks the worker may hold.
  void Learn(int worker, uint64_t run_us);
  // Recounts whether the worker may be handed another task while busy.
  void Reopen(int w) {
    Worker& worker = at(w);
    const bool open = !worker.tasks.empty() && !worker.group && !worker.head_overran &&
                      worker.tasks.size() < worker.depth;
    if (open == worker.open) return;
    worker.open = open;
    if (open) {
      ++open_;
    } else {
      --open_;
    }
  }

  bool Holds(int worker, TaskKey key) const {
    const std::deque<TaskKey>& held = workers_[static_cast<size_t>(worker)].tasks;
    return key != 0 && std::find(held.begin(), held.end(), key) != held.end();
  }

  // Forgets every task the workers hold; they stay busy and are handed nothing more.
  void ForgetAllTasks();

  // The worker's process is gone: out of service, and counted as lost. False if it already was
  // out of service. Release its tasks, then call RemoveIdle().
  bool Lose(int worker);
  // Takes the worker off the idle list.
  void RemoveIdle(int worker);
  // Takes the worker out of service if it is idle; true if it did.
  bool TakeIdle(int worker);
  // A new process, of MPI job `job`, serves the worker, which was out of service: it becomes
  // idle, with nothing learnt of its run times. False if it was in service.
  bool Up(int worker, int job);

 private:
  Worker& at(int w) { return workers_[static_cast<size_t>(w)]; }
  // The `count` lowest-numbered idle workers, in ascending order, all of one job if `one_job`
  // (the job that has `count` idle ones first in that order); empty if there are not so many.
  std::vector<int> LowestIdle(size_t count, bool one_job) const;
  // Takes `count` idle workers into `members` (LowestIdle for several); false if there are not so
  // many.
  bool TakeIdleWorkers(size_t count, bool one_job, absl::InlinedVector<int, 1>& members);

  const size_t max_tasks_per_worker_;
  const absl::Duration long_task_after_;
  const double prefetch_window_us_;
  std::vector<Worker> workers_;
  // The most recently freed is reused first, so that a light load stays on warm workers.
  std::vector<int> idle_;
  size_t busy_ = 0;
  // Busy workers that may be handed another task.
  size_t open_ = 0;
  size_t down_ = 0;
  uint64_t lost_ = 0;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_WORKER_PICKER_H_
