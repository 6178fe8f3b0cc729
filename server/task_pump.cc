#include "server/task_pump.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/shared_memory.h"
#include "wire/wire_error.h"

namespace mpigate::server {
namespace {

// Results handed to the scheduler at once, at most: bounds how long a round of polls that keeps
// finding results holds the first of them back, and how long it holds the scheduler's lock.
constexpr size_t kResultsPerCompletion = 128;

// Task frames smaller than this that go to one worker in one dispatch round travel together in
// one message (Tag::kTasks); larger ones alone, so that a payload is not copied into a batch.
constexpr size_t kTaskBatchBytes = 64 << 10;

wire::ResultFrame FailedResult(uint64_t task_key, const absl::Status& status) {
  wire::ResultFrame result;
  result.set_task_key(task_key);
  wire::SetError(status, *result.mutable_error());
  return result;
}

}  // namespace

TaskPump::TaskPump(ProcessTable& table, wire::PendingSends& sends, GatewayBell* bell,
                   Scheduler& scheduler)
    : table_(table),
      sends_(sends),
      bell_(bell),
      scheduler_(scheduler),
      batches_(static_cast<size_t>(table.workers())),
      sent_to_(static_cast<size_t>(table.workers()), false) {}

absl::StatusOr<bool> TaskPump::Send(DispatchWork& work) {
  bool sent_tasks = false;
  for (Assignment& assignment : work.assignments) {
    Process* process = table_.ProcessOf(assignment.worker);
    if (process == nullptr) {
      // Not handed out once the scheduler knows of the loss; one handed out before is lost.
      Fail(assignment, absl::AbortedError("its worker was lost"));
      continue;
    }
    absl::Status fitted = FitSharedMemory(*process, assignment.frame);
    absl::StatusOr<std::string> buffer =
        fitted.ok() ? wire::Encode(assignment.frame) : absl::StatusOr<std::string>(fitted);
    if (!buffer.ok()) {
      Fail(assignment, buffer.status());
      continue;
    }
    // Small frames for one worker go together, in one message; a large one alone.
    const size_t worker = static_cast<size_t>(assignment.worker);
    if (buffer->size() >= kTaskBatchBytes) {
      // After the worker's frames before it: a worker runs its tasks in the order they came.
      if (absl::Status status = SendBatch(assignment.worker); !status.ok()) return status;
      if (absl::Status status = sends_.Start(table_.CommOf(*process), table_.RankOf(*process),
                                             wire::Tag::kTask, *std::move(buffer));
          !status.ok()) {
        return status;
      }
    } else {
      batches_[worker].add_frames(*std::move(buffer));
    }
    sent_to_[worker] = true;
    table_.Sent(*process);
    sent_tasks = true;
  }
  for (int worker = 0; worker < table_.workers(); ++worker) {
    if (absl::Status status = SendBatch(worker); !status.ok()) return status;
  }
  for (const Interrupt& interrupt : work.interrupts) {
    const Process* process = table_.ProcessOf(interrupt.worker);
    // Nothing goes to a process that is gone: in Open MPI that send would never end.
    if (process == nullptr) continue;
    wire::CancelFrame cancel;
    cancel.set_task_key(interrupt.task_key);
    cancel.set_force(interrupt.force);
    absl::StatusOr<std::string> buffer = wire::Encode(cancel);
    if (!buffer.ok()) return buffer.status();
    if (absl::Status status = sends_.Start(table_.CommOf(*process), table_.RankOf(*process),
                                           wire::Tag::kCancel, *std::move(buffer));
        !status.ok()) {
      return status;
    }
    sent_to_[static_cast<size_t>(interrupt.worker)] = true;
  }
  if (!work.assignments.empty() || !work.interrupts.empty()) {
    for (int worker = 0; worker < table_.workers(); ++worker) {
      if (!sent_to_[static_cast<size_t>(worker)]) continue;
      sent_to_[static_cast<size_t>(worker)] = false;
      const Process* process = table_.ProcessOf(worker);
      if (bell_ == nullptr || process == nullptr || process->doorbell.empty()) continue;
      // A ring only wakes; should it fail, the worker finds the frame on its next poll.
      bell_->Ring(process->doorbell).IgnoreError();
    }
  }
  return sent_tasks;
}

absl::Status TaskPump::Take(Process& process, const wire::ReceivedMessage& message) {
  const int worker = process.worker;
  if (message.tag == wire::Tag::kProgress) {
    if (worker < 0) return absl::OkStatus();
    if (absl::Status status = wire::Decode(message.bytes, progress_); !status.ok()) return status;
    scheduler_.Progress(worker, progress_);
    return absl::OkStatus();
  }
  frames_.clear();
  if (message.tag == wire::Tag::kResults) {
    if (absl::Status status = wire::Decode(message.bytes, results_); !status.ok()) return status;
    for (const std::string& frame : results_.frames()) frames_.push_back(&frame);
  } else if (message.tag == wire::Tag::kResult) {
    frames_.push_back(&message.bytes);
  } else {
    return absl::InternalError(absl::StrCat(ProcessTable::Describe(process),
                                            " sent an unexpected frame with tag ",
                                            static_cast<int>(message.tag)));
  }
  for (const std::string* frame : frames_) {
    table_.Answered(process);
    // A result of a process that no longer serves its worker was accounted for.
    if (worker < 0) continue;
    Scheduler::WorkerResult& taken = received_.emplace_back();
    taken.worker = worker;
    if (absl::Status status = wire::Decode(*frame, taken.result); !status.ok()) return status;
    if (received_.size() >= kResultsPerCompletion) HandOver();
  }
  results_.Clear();
  return absl::OkStatus();
}

void TaskPump::HandOver() {
  if (received_.empty()) return;
  scheduler_.Complete(absl::MakeSpan(received_));
  received_.clear();
}

absl::Status TaskPump::SendBatch(int worker) {
  wire::FrameBatch& batch = batches_[static_cast<size_t>(worker)];
  if (batch.frames_size() == 0) return absl::OkStatus();
  const Process& process = *table_.ProcessOf(worker);
  absl::Status status;
  if (batch.frames_size() == 1) {
    status = sends_.Start(table_.CommOf(process), table_.RankOf(process), wire::Tag::kTask,
                          std::move(*batch.mutable_frames(0)));
  } else {
    absl::StatusOr<std::string> encoded = wire::Encode(batch);
    status = encoded.ok() ? sends_.Start(table_.CommOf(process), table_.RankOf(process),
                                         wire::Tag::kTasks, *std::move(encoded))
                          : encoded.status();
  }
  batch.Clear();
  return status;
}

void TaskPump::Fail(const Assignment& assignment, const absl::Status& why) {
  scheduler_.Complete(assignment.worker, FailedResult(assignment.frame.task_key(), why));
}

absl::Status TaskPump::FitSharedMemory(const Process& process, wire::TaskFrame& frame) {
  if (process.shares_memory) return absl::OkStatus();
  frame.clear_shared_result_prefix();
  if (!frame.has_shared_payload()) return absl::OkStatus();
  absl::StatusOr<std::string> payload =
      ReadSharedObject(frame.shared_payload().name(), frame.shared_payload().size());
  if (!payload.ok()) return payload.status();
  frame.set_payload(*std::move(payload));
  frame.clear_shared_payload();
  return absl::OkStatus();
}

}  // namespace mpigate::server
