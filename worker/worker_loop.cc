#include "worker/worker_loop.h"

#include <unistd.h>

#include <atomic>
#include <climits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "worker/task_runner.h"
#include "worker/task_thread.h"

namespace mpigate::worker {
namespace {

constexpr int kGatewayRank = 0;

// While a task runs, how often the MPI thread looks for a shutdown from the gateway. A result is
// picked up as soon as it is ready regardless; this only bounds how late a shutdown is heard.
constexpr absl::Duration kListenWhileBusy = absl::Milliseconds(20);

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? std::string(name) : std::string();
}

wire::HelloFrame BaseHello() {
  wire::HelloFrame hello;
  hello.set_host(HostName());
  hello.set_pid(static_cast<int32_t>(getpid()));
  return hello;
}

absl::Status SayGoodbye(MPI_Comm gateway) {
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kShutdown, wire::ShutdownFrame());
}

// Sets `cancelled` if the CancelFrame in `bytes` is for the running task (it may instead be for
// one that has just ended).
absl::Status InterruptIfRunning(const std::string& bytes, uint64_t running_key,
                                std::atomic<bool>& cancelled) {
  wire::CancelFrame cancel;
  if (absl::Status status = wire::Decode(bytes, cancel); !status.ok()) return status;
  if (cancel.task_key() == running_key) cancelled.store(true, std::memory_order_relaxed);
  return absl::OkStatus();
}

// The running task's cancellation flag and its latest progress report: written by the task
// thread (Report) and the MPI thread (the flag), read by the other.
class TaskSignals final : public ProgressSink {
 public:
  // For the next task; only while no task runs.
  void Reset() {
    cancelled.store(false, std::memory_order_relaxed);
    absl::MutexLock lock(&mu_);
    reported_ = false;
  }

  void Report(double fraction, absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    fraction_ = fraction;
    message_.assign(message.data(), message.size());
    reported_ = true;
  }

  // If the task has reported since the last call, fills `frame` and returns true.
  bool TakeProgress(wire::ProgressFrame& frame) {
    absl::MutexLock lock(&mu_);
    if (!reported_) return false;
    reported_ = false;
    frame.set_fraction(fraction_);
    frame.set_message(message_);
    return true;
  }

  std::atomic<bool> cancelled{false};

 private:
  absl::Mutex mu_;
  bool reported_ ABSL_GUARDED_BY(mu_) = false;
  double fraction_ ABSL_GUARDED_BY(mu_) = 0;
  std::string message_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, const FunctionRegistry& registry, int rank, int pool_size,
                       Initializer initializer)
    : gateway_(gateway),
      registry_(registry),
      rank_(rank),
      pool_size_(pool_size),
      initializer_(std::move(initializer)) {}

absl::StatusOr<LoopEnd> WorkerLoop::Run() {
  TaskThread task_thread;
  wire::HelloFrame hello = BaseHello();
  for (const auto& [name, definition] : registry_.definitions()) {
    wire::FunctionEntry& function = *hello.add_functions();
    function.set_name(name);
    function.set_description(definition.description);
    function.set_request_type(definition.request_type);
    function.set_response_type(definition.response_type);
  }
  if (!initializer_.function.empty()) {
    // On the task thread, like every task, so that thread-local state it sets up is theirs.
    wire::TaskFrame init;
    init.set_function(initializer_.function);
    init.set_payload(initializer_.input);
    wire::ResultFrame init_result;
    task_thread.Start(
        [&] { init_result = RunTask(registry_, TaskContext(rank_, pool_size_), init); });
    task_thread.AwaitIdle(absl::InfiniteDuration());
    if (init_result.has_error()) {
      // The message is all the pool's status will show, so it carries the exception type too.
      const wire::ErrorInfo& failure = init_result.error();
      wire::ErrorInfo& error = *hello.mutable_initializer_error();
      error = failure;
      error.set_message(absl::StrCat(
          "initializer '", initializer_.function, "' failed: ", failure.exception_type(),
          failure.exception_type().empty() ? "" : ": ", failure.message()));
    }
  }
  if (absl::Status status = wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kHello, hello);
      !status.ok()) {
    return status;
  }

  wire::UsePreciseSleeps();
  wire::PollBackoff backoff;
  // Shared with the running job, which outlives this function if a shutdown abandons it.
  struct Slot {
    wire::TaskFrame task;
    wire::ResultFrame result;
    TaskSignals signals;
  };
  const auto slot = std::make_shared<Slot>();
  while (true) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(gateway_, kGatewayRank);
    if (!received.ok()) return received.status();
    if (!received->has_value()) {
      absl::SleepFor(backoff.NextDelay());
      continue;
    }
    backoff.Reset();
    const wire::ReceivedMessage& message = **received;
    if (message.tag == wire::Tag::kShutdown) {
      if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
      return LoopEnd::kStopped;
    }
    if (message.tag == wire::Tag::kCancel) continue;  // Its task has already ended.
    if (message.tag != wire::Tag::kTask) {
      return absl::InternalError(absl::StrCat("worker received a frame with unexpected tag ",
                                              static_cast<int>(message.tag)));
    }
    if (absl::Status status = wire::Decode(message.bytes, slot->task); !status.ok()) {
      return status;
    }
    slot->signals.Reset();
    task_thread.Start([this, slot] {
      const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
      slot->result = RunTask(registry_, context, slot->task);
    });
    wire::ProgressFrame progress;
    progress.set_task_key(slot->task.task_key());
    while (!task_thread.AwaitIdle(kListenWhileBusy)) {
      if (slot->signals.TakeProgress(progress)) {
        if (absl::Status status =
                wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kProgress, progress);
            !status.ok()) {
          return status;
        }
      }
      // While this worker's task runs the gateway sends only cancels and a shutdown.
      while (true) {
        absl::StatusOr<std::optional<wire::ReceivedMessage>> heard =
            wire::TryReceive(gateway_, kGatewayRank);
        if (!heard.ok()) return heard.status();
        if (!heard->has_value()) break;
        if ((**heard).tag == wire::Tag::kShutdown) {
          if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
          return LoopEnd::kStoppedDuringTask;
        }
        if ((**heard).tag != wire::Tag::kCancel) {
          return absl::InternalError(absl::StrCat("worker received a frame with tag ",
                                                  static_cast<int>((**heard).tag),
                                                  " while running a task"));
        }
        if (absl::Status status =
                InterruptIfRunning((**heard).bytes, slot->task.task_key(), slot->signals.cancelled);
            !status.ok()) {
          return status;
        }
      }
    }
    if (absl::Status status =
            wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kResult, slot->result);
        !status.ok()) {
      return status;
    }
    slot->result.Clear();
  }
}

absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why) {
  wire::HelloFrame hello = BaseHello();
  hello.mutable_error()->set_code(static_cast<int>(why.code()));
  hello.mutable_error()->set_message(std::string(why.message()));
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHello, hello);
}

}  // namespace mpigate::worker
