#include "worker/worker_loop.h"

#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/shared_memory.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "wire/wire_error.h"
#include "worker/death_note.h"
#include "worker/in_process_executor.h"
#include "worker/runner_executor.h"

namespace mpigate::worker {
namespace {

// An idle worker whose gateway rings its doorbell waits this long between polls: a ring ends the
// wait at once, so this only bounds the cost of a ring that never comes.
constexpr absl::Duration kIdleWait = absl::Milliseconds(200);

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  return gethostname(name, sizeof(name)) == 0 ? std::string(name) : std::string();
}

wire::HelloFrame BaseHello() {
  wire::HelloFrame hello;
  hello.set_host(HostName());
  hello.set_pid(static_cast<int32_t>(getpid()));
  // Set by a PMIx runtime (Open MPI's) for every process it starts.
  const char* job = std::getenv("PMIX_NAMESPACE");
  const char* rank = std::getenv("PMIX_RANK");
  uint32_t runtime_rank = 0;
  if (job != nullptr && rank != nullptr && absl::SimpleAtoi(rank, &runtime_rank)) {
    hello.set_runtime_job(job);
    hello.set_runtime_rank(runtime_rank);
  }
  return hello;
}

std::unique_ptr<TaskExecutor> MakeExecutor(GatewayLink& link, TaskBacklog& backlog,
                                           const FunctionRegistry& registry, int rank,
                                           int pool_size, Initializer initializer,
                                           std::optional<RunnerProcess::Options> runner) {
  if (!runner.has_value()) {
    return std::make_unique<InProcessExecutor>(link, backlog, registry, rank, pool_size,
                                               std::move(initializer));
  }
  return std::make_unique<RunnerExecutor>(link, backlog, registry, rank, pool_size,
                                          std::move(initializer), *std::move(runner));
}

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry,
                       int rank, int pool_size, Initializer initializer,
                       HelloDeadline& hello_deadline, std::optional<RunnerProcess::Options> runner)
    : registry_(registry),
      hello_deadline_(hello_deadline),
      link_(gateway, backlog_),
      gangs_(link_, workers, registry, rank, pool_size),
      executor_(MakeExecutor(link_, backlog_, registry, rank, pool_size, std::move(initializer),
                             std::move(runner))) {}

WorkerLoop::~WorkerLoop() = default;

absl::StatusOr<LoopEnd> WorkerLoop::Run() {
  wire::HelloFrame hello = BaseHello();
  const wire::Doorbell* doorbell = link_.OpenDoorbell();
  if (doorbell != nullptr) hello.set_doorbell(doorbell->address());
  // Before any task code runs here (the initializer, in process or for gang functions).
  ArmDeathNote(doorbell != nullptr ? wire::DeathNotePath(doorbell->address()) : "");
  for (const auto& [name, definition] : registry_.definitions()) {
    wire::FunctionEntry& function = *hello.add_functions();
    function.set_name(name);
    function.set_description(definition.description);
    function.set_request_type(definition.request_type);
    function.set_response_type(definition.response_type);
    function.set_gang(static_cast<bool>(definition.gang_function));
  }
  if (absl::Status status = executor_->Start(hello); !status.ok()) {
    wire::SetError(status, *hello.mutable_error());
    link_.Send(wire::Tag::kHello, hello).IgnoreError();
    hello_deadline_.Met();
    return status;
  }
  hello.set_shared_memory_domain(SharedMemoryDomain());
  // For tests only (worker_loss_test): a worker that hangs before its hello, as one whose
  // initializer never returns would, while the file this names exists.
  if (const char* stall = std::getenv("MPIGATE_TEST_STALL_BEFORE_HELLO");
      stall != nullptr && access(stall, F_OK) == 0) {
    while (true) pause();
  }
  if (absl::Status status = link_.Send(wire::Tag::kHello, hello); !status.ok()) return status;
  hello_deadline_.Met();

  wire::UsePreciseSleeps();
  wire::PollBackoff backoff;
  // Once the gateway has rung the doorbell it rings after every frame it sends: once the backoff
  // has settled, the loop then waits for a ring, up to kIdleWait, instead of polling every
  // millisecond. Before that it waits out the backoff's delays on the doorbell too, so that a
  // frame a ring ran ahead of is still picked up promptly.
  // After a task such a worker expects nothing until it is rung: once its hot polls are over
  // (they catch a sequential client's next task without a wake-up) it waits on the doorbell at
  // once, without the ten short sleeps between, each a wake-up, in every pause between tasks.
  bool after_task = false;
  while (true) {
    // Everything that has come first, so that a cancel reaches a task waiting in the backlog
    // before it would start.
    absl::StatusOr<Heard> heard = link_.Hear();
    if (!heard.ok()) return heard.status();
    if (heard->shutdown) return Stop();
    if (backlog_.empty()) {
      if (heard->anything) {
        backoff.Reset();
        continue;
      }
      // Unless a ring it took is still unanswered (its frame not yet here).
      if (after_task && link_.rings() && !link_.ring_unheard()) backoff.SettleAfterHotPolls();
      after_task = false;
      const absl::Duration delay = backoff.NextDelay();
      if (delay == absl::ZeroDuration()) continue;
      if (link_.WaitIdle(link_.rings() && backoff.Settled() ? kIdleWait : delay)) backoff.Reset();
      continue;
    }
    backoff.Reset();
    after_task = true;
    if (backlog_.front_is_gang()) {
      TaskBacklog::Entry gang = backlog_.TakeFront();
      absl::StatusOr<bool> shutdown = gangs_.Run(gang.frame);
      if (!shutdown.ok()) return shutdown.status();
      if (*shutdown) return Stop();
      continue;
    }
    absl::StatusOr<ServeEnd> end = executor_->Serve();
    if (!end.ok()) return end.status();
    if (*end == ServeEnd::kShutdown) return Stop();
    if (*end == ServeEnd::kShutdownDuringTask) return LoopEnd::kStoppedDuringTask;
  }
}

absl::StatusOr<LoopEnd> WorkerLoop::Stop() {
  // Gone before the gateway hears the goodbye: once it has, the pool may be taken down.
  executor_->Stop();
  if (absl::Status status = link_.SayGoodbye(); !status.ok()) return status;
  return LoopEnd::kStopped;
}

absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why) {
  wire::HelloFrame hello = BaseHello();
  wire::SetError(why, *hello.mutable_error());
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHello, hello);
}

}  // namespace mpigate::worker
