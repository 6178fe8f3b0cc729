#include "worker/task_backlog.h"

#include <algorithm>
#include <utility>

#include "absl/status/statusor.h"

namespace mpigate::worker {

absl::Status TaskBacklog::Add(std::string frame) {
  absl::StatusOr<wire::TaskHeader> header = wire::PeekTask(frame);
  if (!header.ok()) return header.status();
  entries_.push_back(Entry{*header, std::move(frame)});
  return absl::OkStatus();
}

bool TaskBacklog::Drop(uint64_t task_key) {
  const auto it = std::find_if(entries_.begin(), entries_.end(), [task_key](const Entry& entry) {
    return entry.header.task_key == task_key;
  });
  if (it == entries_.end()) return false;
  entries_.erase(it);
  return true;
}

void TaskBacklog::PushFront(Entry entry) { entries_.push_front(std::move(entry)); }

TaskBacklog::Entry TaskBacklog::TakeFront() {
  Entry front = std::move(entries_.front());
  entries_.pop_front();
  return front;
}

}  // namespace mpigate::worker
