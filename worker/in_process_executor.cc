#include "worker/in_process_executor.h"

#include <atomic>
#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "wire/mpi_frames.h"
#include "worker/run_timeout.h"

namespace mpigate::worker {

InProcessExecutor::InProcessExecutor(GatewayLink& link, TaskBacklog& backlog,
                                     const FunctionRegistry& registry, int rank, int pool_size,
                                     Initializer initializer)
    : link_(link),
      backlog_(backlog),
      registry_(registry),
      rank_(rank),
      pool_size_(pool_size),
      initializer_(std::move(initializer)),
      slot_(std::make_shared<Slot>()) {}

absl::Status InProcessExecutor::Start(wire::HelloFrame& hello) {
  std::optional<wire::ErrorInfo> initializer_error;
  task_thread_.Start([&] {
    initializer_error = RunInitializer(registry_, TaskContext(rank_, pool_size_), initializer_);
  });
  task_thread_.AwaitIdle(absl::InfiniteDuration());
  if (initializer_error.has_value()) *hello.mutable_initializer_error() = *initializer_error;
  return absl::OkStatus();
}

absl::StatusOr<ServeEnd> InProcessExecutor::Serve() {
  Slot& slot = *slot_;
  while (true) {
    TaskBacklog::Entry next = backlog_.TakeFront();
    if (absl::Status status = wire::Decode(next.frame, slot.task); !status.ok()) return status;
    slot.signals.Reset();
    task_thread_.Start([this, slot = slot_] {
      const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
      slot->result = RunTask(registry_, context, slot->task);
    });
    // A function in this process cannot be killed: past its run timeout it is interrupted.
    const absl::Time deadline = RunDeadline(slot.task.run_timeout_ms(), absl::Now());
    bool timed_out = false;
    while (!task_thread_.AwaitIdle(kListenWhileBusy)) {
      if (absl::Status status = link_.ForwardProgress(slot.task.task_key(), slot.signals);
          !status.ok()) {
        return status;
      }
      absl::StatusOr<Heard> heard = link_.Hear();
      if (!heard.ok()) return heard.status();
      if (heard->shutdown) {
        if (absl::Status status = link_.SayGoodbye(); !status.ok()) return status;
        return ServeEnd::kShutdownDuringTask;
      }
      timed_out = timed_out || absl::Now() >= deadline;
      bool force = false;  // A function in this process cannot be killed: force interrupts.
      if (heard->Cancels(slot.task.task_key(), force) || timed_out) {
        slot.signals.cancelled.store(true, std::memory_order_relaxed);
      }
    }
    if (timed_out) FailPastDeadline(slot.task.run_timeout_ms(), "interrupted", slot.result);
    if (absl::Status status = link_.Answer(slot.result); !status.ok()) return status;
    slot.result.Clear();
    // The next task, if one waits here: first everything the gateway has sent since, so that a
    // cancel reaches it before it starts.
    if (backlog_.empty() || backlog_.front_is_gang()) return ServeEnd::kServed;
    absl::StatusOr<Heard> heard = link_.Hear();
    if (!heard.ok()) return heard.status();
    if (heard->shutdown) return ServeEnd::kShutdown;
    if (backlog_.empty() || backlog_.front_is_gang()) return ServeEnd::kServed;
  }
}

}  // namespace mpigate::worker
