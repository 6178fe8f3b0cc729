#include "server/process_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mpigate::server {

ProcessTable::ProcessTable(int workers, int rank_offset)
    : workers_(workers),
      rank_offset_(rank_offset),
      worker_process_(static_cast<size_t>(workers), -1) {}

int ProcessTable::AddCohort(MPI_Comm comm, absl::Time now) {
  int slot = -1;
  for (int c = 0; c < cohort_count() && slot < 0; ++c) {
    const Cohort& old = cohorts_[static_cast<size_t>(c)];
    if (c != target_ && old.live == 0 && (old.comm == MPI_COMM_NULL || old.broken)) slot = c;
  }
  if (slot < 0) {
    slot = cohort_count();
    cohorts_.emplace_back().first_process = process_count();
    processes_.resize(processes_.size() + static_cast<size_t>(workers_));
  }
  Cohort& cohort = cohorts_[static_cast<size_t>(slot)];
  const int first_process = cohort.first_process;
  cohort = Cohort();
  cohort.comm = comm;
  cohort.first_process = first_process;
  cohort.live = workers_;
  cohort.replacement = jobs_added_++ > 0;
  awaiting_ += workers_;
  for (int index = 0; index < workers_; ++index) {
    Process& process = processes_[static_cast<size_t>(first_process + index)];
    const uint32_t generation = process.generation + 1;
    process = Process();
    process.generation = generation;
    process.cohort = slot;
    process.index = index;
    process.spawned = now;
  }
  target_ = slot;
  unsettled_ = true;
  ++changes_;
  return slot;
}

void ProcessTable::SetState(Process& process, Process::State state) {
  unsettled_ = true;
  ++changes_;
  const auto awaited = [](Process::State each) {
    return each == Process::State::kBooting || each == Process::State::kStopping;
  };
  awaiting_ += (awaited(state) ? 1 : 0) - (awaited(process.state) ? 1 : 0);
  if (state == Process::State::kGone && process.state != Process::State::kGone) {
    --cohorts_[static_cast<size_t>(process.cohort)].live;
  }
  process.state = state;
}

void ProcessTable::Serve(int worker, int id) {
  worker_process_[static_cast<size_t>(worker)] = id;
  ++changes_;
}

int ProcessTable::WorkersDown() const {
  return static_cast<int>(std::count(worker_process_.begin(), worker_process_.end(), -1));
}

absl::Time ProcessTable::YoungestUp() const {
  absl::Time youngest = absl::InfinitePast();
  for (const int id : worker_process_) {
    if (id >= 0) youngest = std::max(youngest, processes_[static_cast<size_t>(id)].up_since);
  }
  return youngest;
}

int ProcessTable::Stopping() const {
  return static_cast<int>(std::count_if(
      processes_.begin(), processes_.end(),
      [](const Process& process) { return process.state == Process::State::kStopping; }));
}

MPI_Comm ProcessTable::AbortComm() const {
  if (target_ >= 0 && cohorts_[static_cast<size_t>(target_)].comm != MPI_COMM_NULL) {
    return cohorts_[static_cast<size_t>(target_)].comm;
  }
  MPI_Comm comm = MPI_COMM_WORLD;
  for (const Cohort& cohort : cohorts_) {
    if (cohort.comm != MPI_COMM_NULL) comm = cohort.comm;
  }
  return comm;
}

bool ProcessTable::KilledStillEnding() const {
  return std::any_of(processes_.begin(), processes_.end(), [](const Process& process) {
    return process.state != Process::State::kGone && !process.killed_because.empty();
  });
}

uint64_t ProcessTable::WatchId(int id) const {
  return (static_cast<uint64_t>(processes_[static_cast<size_t>(id)].generation) << 32) |
         static_cast<uint32_t>(id);
}

int ProcessTable::ProcessOfWatchId(uint64_t watch_id) const {
  const uint32_t id = static_cast<uint32_t>(watch_id);
  if (id >= processes_.size() || processes_[id].generation != watch_id >> 32) return -1;
  return static_cast<int>(id);
}

std::string ProcessTable::Describe(const Process& process) {
  const std::string where =
      absl::StrCat(" on ", process.hello.host(), " (pid ", process.hello.pid(), ")");
  if (process.worker >= 0) return absl::StrCat("worker ", process.worker, where);
  return absl::StrCat("replacement process for worker ", process.index, where);
}

}  // namespace mpigate::server
