#include "client/internal/submit_batcher.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

#include "common/shared_memory.h"

namespace mpigate::internal {
namespace {

// The most specs whose storage a batch the service has leaves to the next specs queued
// (SubmitBatcher::ReceivedUpTo): 4096 of them take about half a megabyte.
constexpr size_t kSpareTasks = 4096;

// A task id adds at most this much to a TaskSpec's encoding: a tag and a 10-byte varint.
constexpr size_t kTaskIdBytes = 1 + 10;

// Removes the input object of `spec`, which the service may have: a task that got it may still be
// reading it, so it is not parked for reuse.
void RemoveInput(const v1::TaskSpec& spec) {
  if (spec.has_shared_payload()) UnlinkSharedObject(spec.shared_payload().name());
}

// A timeout in whole milliseconds, rounded up; 0 on the wire means no limit, so a timeout that
// rounds to nothing becomes 1 ms.
uint64_t WholeMillisecondsAtLeastOne(absl::Duration timeout) {
  return static_cast<uint64_t>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)))));
}

}  // namespace

OutgoingTask SubmitBatcher::NewTask(absl::string_view function, const SubmitOptions& options) {
  OutgoingTask task;
  task.spec.set_function(std::string(function));
  task.spec.set_payload_type(options.payload_type);
  if (options.queue_timeout != absl::InfiniteDuration()) {
    task.spec.mutable_options()->set_queue_timeout_ms(
        WholeMillisecondsAtLeastOne(options.queue_timeout));
  }
  if (options.gang_size != 0) task.spec.mutable_options()->set_gang_size(options.gang_size);
  if (options.run_timeout != absl::InfiniteDuration()) {
    task.spec.mutable_options()->set_run_timeout_ms(
        WholeMillisecondsAtLeastOne(options.run_timeout));
  }
  if (options.max_retries != 0) task.spec.mutable_options()->set_max_retries(options.max_retries);
  return task;
}

size_t SubmitBatcher::WireBytes(const v1::TaskSpec& spec) {
  return spec.ByteSizeLong() + kTaskIdBytes + kPerTaskOverhead;
}

void SubmitBatcher::ReleaseInput(const v1::TaskSpec& spec) {
  if (spec.has_shared_payload()) ReleaseSharedObject(spec.shared_payload().name());
}

bool SubmitBatcher::Write(SessionStream& stream, std::vector<OutgoingTask>& batch,
                          size_t send_limit) {
  const size_t budget = std::min(kBatchBytes, send_limit - kRequestOverhead);
  v1::SessionRequest request;
  size_t next = 0;
  while (next < batch.size()) {
    auto* tasks = request.mutable_submit()->mutable_tasks();
    const size_t first = next;
    size_t bytes = 0;
    // At least one task per message.
    do {
      bytes += batch[next].wire_bytes;
      tasks->Add(std::move(batch[next].spec));
      ++next;
    } while (next < batch.size() && bytes + batch[next].wire_bytes <= budget);
    const bool ok = stream.Write(request);
    // Moving a message swaps its fields, so no payload is copied.
    for (size_t i = first; i < next; ++i) {
      batch[i].spec = std::move(*tasks->Mutable(static_cast<int>(i - first)));
    }
    if (!ok) return false;
    request.Clear();
  }
  return true;
}

void SubmitBatcher::TakeQueued(std::vector<OutgoingTask>& batch) {
  batch.swap(queued_);
  queued_.swap(spare_);
}

void SubmitBatcher::KeepSent(std::vector<OutgoingTask>& batch) {
  if (batch.empty()) return;
  const uint64_t last_task_id = batch.back().spec.task_id();
  sent_.push_back(SentBatch{last_task_id, std::move(batch)});
  batch.clear();
}

void SubmitBatcher::ReceivedUpTo(uint64_t task_id) {
  while (!sent_.empty() && sent_.front().last_task_id <= task_id) {
    std::vector<OutgoingTask>& tasks = sent_.front().tasks;
    // The larger storage is kept, up to a bound: a burst of a million tasks does not leave its
    // queue's memory held for the session's life.
    if (tasks.capacity() <= kSpareTasks) {
      tasks.clear();
      if (queued_.empty() && tasks.capacity() > queued_.capacity()) {
        queued_.swap(tasks);
      } else if (tasks.capacity() > spare_.capacity()) {
        spare_.swap(tasks);
      }
    }
    sent_.pop_front();
  }
}

void SubmitBatcher::RequeueAfter(uint64_t last_task_id) {
  ReceivedUpTo(last_task_id);
  std::vector<OutgoingTask> resend;
  for (SentBatch& batch : sent_) {
    for (OutgoingTask& task : batch.tasks) {
      if (task.spec.task_id() > last_task_id) resend.push_back(std::move(task));
    }
  }
  sent_.clear();
  std::move(queued_.begin(), queued_.end(), std::back_inserter(resend));
  queued_ = std::move(resend);
}

void SubmitBatcher::DropAll() {
  for (const SentBatch& batch : sent_) {
    for (const OutgoingTask& task : batch.tasks) RemoveInput(task.spec);
  }
  for (const OutgoingTask& task : queued_) ReleaseInput(task.spec);
  sent_.clear();
  queued_.clear();
  spare_ = {};
}

}  // namespace mpigate::internal
