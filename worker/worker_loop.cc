#include "worker/worker_loop.h"

#include <unistd.h>

#include <climits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "worker/task_runner.h"

namespace mpigate::worker {
namespace {

constexpr int kGatewayRank = 0;

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

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, const FunctionRegistry& registry, TaskContext context)
    : gateway_(gateway), registry_(registry), context_(context) {}

absl::Status WorkerLoop::Run() {
  wire::HelloFrame hello = BaseHello();
  for (const auto& [name, entry] : registry_.entries()) {
    wire::FunctionEntry& function = *hello.add_functions();
    function.set_name(name);
    function.set_description(entry.description);
  }
  if (absl::Status status = wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kHello, hello);
      !status.ok()) {
    return status;
  }

  wire::UsePreciseSleeps();
  wire::PollBackoff backoff;
  wire::TaskFrame task;
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
    switch (message.tag) {
      case wire::Tag::kShutdown:
        return absl::OkStatus();
      case wire::Tag::kTask: {
        if (absl::Status status = wire::Decode(message.bytes, task); !status.ok()) return status;
        const wire::ResultFrame result = RunTask(registry_, context_, task);
        if (absl::Status status =
                wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kResult, result);
            !status.ok()) {
          return status;
        }
        break;
      }
      default:
        return absl::InternalError(absl::StrCat("worker received a frame with unexpected tag ",
                                                static_cast<int>(message.tag)));
    }
  }
}

absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why) {
  wire::HelloFrame hello = BaseHello();
  hello.mutable_error()->set_code(static_cast<int>(why.code()));
  hello.mutable_error()->set_message(std::string(why.message()));
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHello, hello);
}

}  // namespace mpigate::worker
