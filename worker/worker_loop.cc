#include "worker/worker_loop.h"

#include <unistd.h>

#include <climits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
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

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, const FunctionRegistry& registry, TaskContext context,
                       Initializer initializer)
    : gateway_(gateway),
      registry_(registry),
      context_(context),
      initializer_(std::move(initializer)) {}

absl::StatusOr<LoopEnd> WorkerLoop::Run() {
  TaskThread task_thread;
  wire::HelloFrame hello = BaseHello();
  for (const auto& [name, entry] : registry_.entries()) {
    wire::FunctionEntry& function = *hello.add_functions();
    function.set_name(name);
    function.set_description(entry.description);
  }
  if (!initializer_.function.empty()) {
    // On the task thread, like every task, so that thread-local state it sets up is theirs.
    wire::TaskFrame init;
    init.set_function(initializer_.function);
    init.set_payload(initializer_.input);
    wire::ResultFrame init_result;
    task_thread.Start([&] { init_result = RunTask(registry_, context_, init); });
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
    if (message.tag != wire::Tag::kTask) {
      return absl::InternalError(absl::StrCat("worker received a frame with unexpected tag ",
                                              static_cast<int>(message.tag)));
    }
    if (absl::Status status = wire::Decode(message.bytes, slot->task); !status.ok()) {
      return status;
    }
    task_thread.Start([this, slot] { slot->result = RunTask(registry_, context_, slot->task); });
    while (!task_thread.AwaitIdle(kListenWhileBusy)) {
      // The gateway sends nothing but a shutdown while this worker's task runs.
      absl::StatusOr<std::optional<wire::ReceivedMessage>> stop =
          wire::TryReceive(gateway_, kGatewayRank);
      if (!stop.ok()) return stop.status();
      if (!stop->has_value()) continue;
      if ((**stop).tag != wire::Tag::kShutdown) {
        return absl::InternalError(absl::StrCat("worker received a frame with tag ",
                                                static_cast<int>((**stop).tag),
                                                " while running a task"));
      }
      if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
      return LoopEnd::kStoppedDuringTask;
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
