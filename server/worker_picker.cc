#include "server/worker_picker.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace mpigate::server {

WorkerPicker::WorkerPicker(int workers, int max_tasks_per_worker, absl::Duration prefetch_window)
    : max_tasks_per_worker_(static_cast<size_t>(std::max(max_tasks_per_worker, 1))),
      long_task_after_(10 * prefetch_window),
      prefetch_window_us_(absl::ToDoubleMicroseconds(prefetch_window)),
      workers_(static_cast<size_t>(workers)) {}

void WorkerPicker::MakeAllIdle() {
  // Worker 0 on top of the stack: a light load lands on the lowest-numbered workers.
  for (int w = workers() - 1; w >= 0; --w) idle_.push_back(w);
}

std::vector<int> WorkerPicker::LowestIdle(size_t count, bool one_job) const {
  std::vector<int> sorted = idle_;
  std::sort(sorted.begin(), sorted.end());
  if (!one_job) {
    sorted.resize(sorted.size() >= count ? count : 0);
    return sorted;
  }
  // Jobs are few (two while lost workers are replaced), and nearly always one.
  absl::InlinedVector<std::pair<int, std::vector<int>>, 2> by_job;
  for (const int w : sorted) {
    const int job = workers_[static_cast<size_t>(w)].job;
    auto mates = std::find_if(by_job.begin(), by_job.end(),
                              [job](const auto& entry) { return entry.first == job; });
    if (mates == by_job.end()) mates = by_job.insert(by_job.end(), {job, {}});
    mates->second.push_back(w);
    if (mates->second.size() == count) return std::move(mates->second);
  }
  return {};
}

bool WorkerPicker::TakeIdleWorkers(size_t count, bool one_job,
                                   absl::InlinedVector<int, 1>& members) {
  if (count == 1) {
    members.push_back(idle_.back());
    idle_.pop_back();
    return true;
  }
  // The lowest-numbered idle workers, so that a gang's ranks follow the workers' order and the
  // choice does not depend on which finished last; the others keep their reuse order.
  const std::vector<int> taken = LowestIdle(count, one_job);
  if (taken.empty()) return false;
  members.assign(taken.begin(), taken.end());
  idle_.erase(std::remove_if(idle_.begin(), idle_.end(),
                             [&taken](int worker) {
                               return std::binary_search(taken.begin(), taken.end(), worker);
                             }),
              idle_.end());
  return true;
}

bool WorkerPicker::Pick(size_t count, bool group, bool one_job, absl::Time now,
                        absl::InlinedVector<int, 1>& members) {
  // Idle workers enough but not of one job: a gang waits until the pool is one job again.
  if (idle_.size() >= count) return TakeIdleWorkers(count, one_job, members);
  if (group || open_ == 0) return false;
  int best = -1;
  for (int w = 0; w < workers(); ++w) {
    Worker& worker = at(w);
    if (!worker.open) continue;
    if (now - worker.head_started > long_task_after_) {
      worker.head_overran = true;
      Reopen(w);
      continue;
    }
    if (best < 0 || worker.tasks.size() < at(best).tasks.size()) best = w;
  }
  if (best < 0) return false;
  members.push_back(best);
  return true;
}

bool WorkerPicker::Assign(absl::Span<const int> members, TaskKey key, bool group, absl::Time now) {
  for (const int w : members) {
    Worker& worker = at(w);
    if (worker.tasks.empty()) {
      ++busy_;
      worker.head_started = now;
      worker.head_overran = false;
    }
    worker.tasks.push_back(key);
    worker.group = group;
    Reopen(w);
  }
  return !group && at(members.front()).tasks.size() > 1;
}

bool WorkerPicker::Release(int w, TaskKey key, absl::Time now, TaskKey& next) {
  next = 0;
  Worker& worker = at(w);
  // Normally the first it holds; one interrupted while in its backlog may end before.
  const auto held = std::find(worker.tasks.begin(), worker.tasks.end(), key);
  if (key == 0 || held == worker.tasks.end()) return false;
  if (held == worker.tasks.begin()) {
    worker.head_started = now;
    worker.head_overran = false;
    if (worker.tasks.size() > 1) next = worker.tasks[1];
  }
  worker.tasks.erase(held);
  if (worker.tasks.empty()) {
    // A gang member that is done is free at once, even while the rest of its gang runs.
    --busy_;
    worker.group = false;
    idle_.push_back(w);
  }
  return true;
}

void WorkerPicker::Learn(int w, uint64_t run_us) {
  Worker& worker = at(w);
  const double run = static_cast<double>(run_us);
  // A weight of 1/8: a few tasks of a new length are enough to change course.
  worker.mean_run_us =
      worker.mean_run_us < 0 ? run : worker.mean_run_us + (run - worker.mean_run_us) / 8;
  const double fits = prefetch_window_us_ / std::max(worker.mean_run_us, 1.0);
  worker.depth = fits >= static_cast<double>(max_tasks_per_worker_)
                     ? max_tasks_per_worker_
                     : std::max<size_t>(static_cast<size_t>(fits), 1);
  Reopen(w);
}

void WorkerPicker::ForgetAllTasks() {
  for (Worker& worker : workers_) {
    worker.tasks.clear();
    worker.open = false;
  }
  busy_ = 0;
  open_ = 0;
}

bool WorkerPicker::Lose(int w) {
  Worker& worker = at(w);
  if (worker.down) return false;
  worker.down = true;
  ++down_;
  ++lost_;
  return true;
}

void WorkerPicker::RemoveIdle(int w) {
  idle_.erase(std::remove(idle_.begin(), idle_.end(), w), idle_.end());
}

bool WorkerPicker::TakeIdle(int w) {
  const auto idle = std::find(idle_.begin(), idle_.end(), w);
  if (idle == idle_.end()) return false;
  idle_.erase(idle);
  at(w).down = true;
  ++down_;
  return true;
}

bool WorkerPicker::Up(int w, int job) {
  Worker& worker = at(w);
  if (!worker.down) return false;
  worker = Worker();
  worker.job = job;
  --down_;
  idle_.push_back(w);
  return true;
}

}  // namespace mpigate::server
