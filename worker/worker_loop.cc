#include "worker/worker_loop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "worker/gang.h"
#include "worker/task_runner.h"
#include "worker/task_thread.h"

namespace mpigate::worker {
namespace {

constexpr int kGatewayRank = 0;

// While a task runs, how often the MPI thread looks for a shutdown from the gateway. A result is
// picked up as soon as it is ready regardless; this only bounds how late a shutdown is heard.
constexpr absl::Duration kListenWhileBusy = absl::Milliseconds(20);

// While a gang task runs, how often its function's polls look at the gateway. A gang's collective
// calls cost microseconds, so polls come often; this keeps them cheap and an interrupt prompt.
constexpr absl::Duration kListenDuringGang = absl::Milliseconds(1);

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

// Sends the running task's latest progress report, if it has made one since the last call.
absl::Status ForwardProgress(MPI_Comm gateway, uint64_t task_key, TaskSignals& signals) {
  wire::ProgressFrame progress;
  if (!signals.TakeProgress(progress)) return absl::OkStatus();
  progress.set_task_key(task_key);
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kProgress, progress);
}

// While the task with key `task_key` runs: takes every frame the gateway has sent meanwhile,
// which can only be cancels (for this task, they set its flag) and a shutdown. Returns true on a
// shutdown, leaving anything after it unread.
absl::StatusOr<bool> HearGateway(MPI_Comm gateway, uint64_t task_key, TaskSignals& signals) {
  while (true) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> heard =
        wire::TryReceive(gateway, kGatewayRank);
    if (!heard.ok()) return heard.status();
    if (!heard->has_value()) return false;
    if ((**heard).tag == wire::Tag::kShutdown) return true;
    if ((**heard).tag != wire::Tag::kCancel) {
      return absl::InternalError(absl::StrCat("worker received a frame with tag ",
                                              static_cast<int>((**heard).tag),
                                              " while running a task"));
    }
    if (absl::Status status = InterruptIfRunning((**heard).bytes, task_key, signals.cancelled);
        !status.ok()) {
      return status;
    }
  }
}

// The loop's ear while it runs a gang function itself: the function's polls of cancelled() listen
// to the gateway through it. A shutdown cannot be answered mid-call, so it interrupts the call and
// is remembered for the loop to answer after it.
//
// Thread-safety: Poll() may be called from any thread but does something only on the thread that
// made the listener (the MPI thread); the accessors are for that thread, after the call.
class GangListener final : public GangLink {
 public:
  GangListener(MPI_Comm gateway, uint64_t task_key, TaskSignals& signals)
      : gateway_(gateway),
        task_key_(task_key),
        signals_(signals),
        mpi_thread_(std::this_thread::get_id()) {}

  void Poll() override {
    // Other threads of the function (an OpenMP team, say) only read the flag: MPI is not theirs.
    if (std::this_thread::get_id() != mpi_thread_ || shutdown_ || !status_.ok()) return;
    const absl::Time now = absl::Now();
    if (now < next_listen_) return;
    next_listen_ = now + kListenDuringGang;
    // Progress keeps the pace it has for other tasks: a gang polls far more often than anyone
    // wants to hear how far it has got.
    if (now >= next_progress_) {
      next_progress_ = now + kListenWhileBusy;
      status_ = ForwardProgress(gateway_, task_key_, signals_);
    }
    if (status_.ok()) {
      absl::StatusOr<bool> shutdown = HearGateway(gateway_, task_key_, signals_);
      status_ = shutdown.status();
      shutdown_ = shutdown.value_or(false);
    }
    // A shutdown, or a gateway that cannot be heard, stops the call; the loop acts after it.
    if (shutdown_ || !status_.ok()) signals_.cancelled.store(true, std::memory_order_relaxed);
  }

  // The first error in talking to the gateway.
  const absl::Status& status() const { return status_; }
  // True if the gateway said shut down during the call.
  bool shutdown() const { return shutdown_; }

 private:
  const MPI_Comm gateway_;
  const uint64_t task_key_;
  TaskSignals& signals_;
  const std::thread::id mpi_thread_;
  absl::Time next_listen_ = absl::InfinitePast();
  absl::Time next_progress_ = absl::InfinitePast();
  bool shutdown_ = false;
  absl::Status status_;
};

// The gang's own communicator, made by its members alone (MPI_Comm_create_group), so that no other
// worker and not the gateway need take part. The tag comes from the task's key so that the making
// of one gang's communicator cannot match another's.
absl::StatusOr<MPI_Comm> MakeGangComm(const WorkerGroup& workers, const wire::TaskFrame& task) {
  std::vector<int> ranks;
  ranks.reserve(task.gang_size());
  for (const int worker : task.gang()) ranks.push_back(workers.first_rank + worker);
  MPI_Group all = MPI_GROUP_NULL;
  if (const int rc = MPI_Comm_group(workers.comm, &all); rc != MPI_SUCCESS) {
    return wire::MpiError(rc, "MPI_Comm_group");
  }
  MPI_Group members = MPI_GROUP_NULL;
  const int incl_rc = MPI_Group_incl(all, static_cast<int>(ranks.size()), ranks.data(), &members);
  MPI_Group_free(&all);
  if (incl_rc != MPI_SUCCESS) return wire::MpiError(incl_rc, "MPI_Group_incl");

  // MPI guarantees tags up to at least 32767; MPI_TAG_UB says how far beyond.
  int* tag_ub = nullptr;
  int has_tag_ub = 0;
  MPI_Comm_get_attr(workers.comm, MPI_TAG_UB, &tag_ub, &has_tag_ub);
  const uint64_t tags = static_cast<uint64_t>(has_tag_ub ? *tag_ub : 32767) + 1;
  const int tag = static_cast<int>(task.task_key() % tags);

  MPI_Comm comm = MPI_COMM_NULL;
  const int create_rc = MPI_Comm_create_group(workers.comm, members, tag, &comm);
  MPI_Group_free(&members);
  if (create_rc != MPI_SUCCESS) return wire::MpiError(create_rc, "MPI_Comm_create_group");
  if (absl::Status status = wire::ReturnErrors(comm); !status.ok()) {
    MPI_Comm_free(&comm);
    return status;
  }
  return comm;
}

void SetError(const absl::Status& status, wire::ErrorInfo& error) {
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
}

// Runs this worker's part of the gang task `task` on the calling thread, which must own MPI, and
// leaves its outcome in `result`. Returns true if the gateway said shut down during the call (the
// result is then not wanted); an error only if MPI fails outside the function.
absl::StatusOr<bool> RunGang(MPI_Comm gateway, const WorkerGroup& workers,
                             const FunctionRegistry& registry, const TaskContext& context,
                             const wire::TaskFrame& task, TaskSignals& signals,
                             wire::ResultFrame& result) {
  result.set_task_key(task.task_key());
  const auto me = std::find(task.gang().begin(), task.gang().end(), context.rank());
  if (me == task.gang().end()) {
    SetError(absl::InternalError(absl::StrCat("worker ", context.rank(),
                                              " was sent a gang task it is not a member of")),
             *result.mutable_error());
    return false;
  }
  absl::StatusOr<MPI_Comm> comm = MakeGangComm(workers, task);
  if (!comm.ok()) {
    SetError(comm.status(), *result.mutable_error());
    return false;
  }
  GangListener listener(gateway, task.task_key(), signals);
  const GangContext gang(context, *comm, static_cast<int>(me - task.gang().begin()),
                         task.gang_size(), &listener);
  result = RunGangTask(registry, gang, task);
  if (const int rc = MPI_Comm_free(&*comm); rc != MPI_SUCCESS) {
    return wire::MpiError(rc, "MPI_Comm_free");
  }
  if (!listener.status().ok()) return listener.status();
  return listener.shutdown();
}

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry,
                       int rank, int pool_size, Initializer initializer)
    : gateway_(gateway),
      workers_(workers),
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
    function.set_gang(static_cast<bool>(definition.gang_function));
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
    if (slot->task.gang_size() > 0) {
      // Here, not on the task thread: the gang function makes MPI calls, and MPI is this thread's.
      const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
      absl::StatusOr<bool> shutdown =
          RunGang(gateway_, workers_, registry_, context, slot->task, slot->signals, slot->result);
      if (!shutdown.ok()) return shutdown.status();
      if (*shutdown) {
        if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
        return LoopEnd::kStopped;
      }
    } else {
      task_thread.Start([this, slot] {
        const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
        slot->result = RunTask(registry_, context, slot->task);
      });
      while (!task_thread.AwaitIdle(kListenWhileBusy)) {
        if (absl::Status status = ForwardProgress(gateway_, slot->task.task_key(), slot->signals);
            !status.ok()) {
          return status;
        }
        absl::StatusOr<bool> shutdown = HearGateway(gateway_, slot->task.task_key(), slot->signals);
        if (!shutdown.ok()) return shutdown.status();
        if (*shutdown) {
          if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
          return LoopEnd::kStoppedDuringTask;
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
