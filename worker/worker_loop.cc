#include "worker/worker_loop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/shared_memory.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"
#include "wire/task_peek.h"
#include "worker/death_note.h"
#include "worker/gang.h"
#include "worker/runner_process.h"
#include "worker/task_runner.h"
#include "worker/task_thread.h"

namespace mpigate::worker {
namespace {

constexpr int kGatewayRank = 0;

// While a task runs, how often the MPI thread looks for a shutdown from the gateway. A result is
// picked up as soon as it is ready regardless; this only bounds how late a shutdown is heard.
constexpr absl::Duration kListenWhileBusy = absl::Milliseconds(20);

// An idle worker whose gateway rings its doorbell waits this long between polls: a ring ends the
// wait at once, so this only bounds the cost of a ring that never comes.
constexpr absl::Duration kIdleWait = absl::Milliseconds(200);

// How many times a worker tries to start a task runner for a task before failing it.
constexpr int kRunnerStartAttempts = 3;

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

// What the gateway said since the loop last listened.
struct Heard {
  // Any frame at all.
  bool anything = false;
  bool shutdown = false;
  // With the shutdown: whether to disconnect from the gateway (ShutdownFrame.skip_disconnect).
  bool disconnect = true;
  // Cancels of tasks that were not waiting in the backlog: the running one, one queued in the task
  // runner, or one that has already ended.
  std::vector<wire::CancelFrame> cancels;

  // Whether a cancel names `task_key`; sets `force` if one asked for it to be killed.
  bool Cancels(uint64_t task_key, bool& force) const {
    bool named = false;
    for (const wire::CancelFrame& cancel : cancels) {
      if (cancel.task_key() != task_key) continue;
      named = true;
      force = force || cancel.force();
    }
    return named;
  }
};

// Takes every frame the gateway has sent since the last call: tasks join the backlog, a cancel of
// a task waiting there drops it (answered CANCELLED: it never started), and other cancels are
// reported. Stops at a shutdown, leaving anything after it unread. Sends a heartbeat if one is
// due: this is where the loop listens.
absl::StatusOr<Heard> HearGateway(MPI_Comm gateway, TaskBacklog& backlog, Heartbeat& heartbeat) {
  Heard heard;
  while (!heard.shutdown) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(gateway, kGatewayRank);
    if (!received.ok()) return received.status();
    if (!received->has_value()) break;
    heard.anything = true;
    wire::ReceivedMessage& message = **received;
    if (message.tag == wire::Tag::kShutdown) {
      wire::ShutdownFrame shutdown;
      if (absl::Status status = wire::Decode(message.bytes, shutdown); !status.ok()) return status;
      heard.shutdown = true;
      heard.disconnect = !shutdown.skip_disconnect();
      continue;
    }
    if (message.tag == wire::Tag::kHeartbeat) {
      wire::HeartbeatFrame asked;
      if (absl::Status status = wire::Decode(message.bytes, asked); !status.ok()) return status;
      heartbeat.Start(absl::Milliseconds(asked.interval_ms()));
      continue;
    }
    if (message.tag == wire::Tag::kTask) {
      if (absl::Status status = backlog.Add(std::move(message.bytes)); !status.ok()) return status;
      continue;
    }
    if (message.tag == wire::Tag::kTasks) {
      wire::FrameBatch batch;
      if (absl::Status status = wire::Decode(message.bytes, batch); !status.ok()) return status;
      for (std::string& frame : *batch.mutable_frames()) {
        if (absl::Status status = backlog.Add(std::move(frame)); !status.ok()) return status;
      }
      continue;
    }
    if (message.tag != wire::Tag::kCancel) {
      return absl::InternalError(absl::StrCat("worker received a frame with unexpected tag ",
                                              static_cast<int>(message.tag)));
    }
    wire::CancelFrame cancel;
    if (absl::Status status = wire::Decode(message.bytes, cancel); !status.ok()) return status;
    if (!backlog.Drop(cancel.task_key())) {
      heard.cancels.push_back(std::move(cancel));
      continue;
    }
    if (absl::Status status = wire::SendFrame(gateway, kGatewayRank, wire::Tag::kResult,
                                              DroppedBeforeStart(cancel.task_key()));
        !status.ok()) {
      return status;
    }
  }
  if (!heard.shutdown) {
    if (absl::Status status = heartbeat.MaybeSend(gateway); !status.ok()) return status;
  }
  return heard;
}

// When a task must end by: run_timeout_ms after `start`, or never.
absl::Time RunDeadline(uint64_t run_timeout_ms, absl::Time start) {
  if (run_timeout_ms == 0) return absl::InfiniteFuture();
  return start + absl::Milliseconds(static_cast<int64_t>(
                     std::min<uint64_t>(run_timeout_ms, std::numeric_limits<int64_t>::max())));
}

void SetError(const absl::Status& status, wire::ErrorInfo& error) {
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
}

// The outcome of a task that ran past its run timeout, whatever it returned; `how` says what was
// done about it.
void FailPastDeadline(uint64_t run_timeout_ms, absl::string_view how, wire::ResultFrame& result) {
  const uint64_t key = result.task_key();
  const uint64_t run_us = result.run_us();
  result.Clear();
  result.set_task_key(key);
  result.set_run_us(run_us);
  SetError(absl::DeadlineExceededError(absl::StrCat("task ran past its run timeout of ",
                                                    run_timeout_ms, " ms and was ", how)),
           *result.mutable_error());
}

// Ends the process (exit status 1) unless Met() is called within `timeout` of its making.
class HelloDeadline {
 public:
  explicit HelloDeadline(absl::Duration timeout) {
    if (timeout == absl::InfiniteDuration()) return;
    thread_ = std::thread([this, timeout] {
      if (met_.WaitForNotificationWithTimeout(timeout)) return;
      const std::string said =
          absl::StrCat("mpigate-worker: no hello within ", absl::FormatDuration(timeout),
                       ": the gateway has given this worker up; exiting\n");
      [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, said.data(), said.size());
      _exit(1);
    });
  }
  ~HelloDeadline() { Met(); }
  HelloDeadline(const HelloDeadline&) = delete;
  HelloDeadline& operator=(const HelloDeadline&) = delete;

  void Met() {
    if (!met_.HasBeenNotified()) met_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Notification met_;
  std::thread thread_;
};

// The loop's ear while it runs a gang function itself: the function's polls of cancelled() listen
// to the gateway through it. A shutdown cannot be answered mid-call, so it interrupts the call and
// is remembered for the loop to answer after it.
//
// Thread-safety: Poll() may be called from any thread but does something only on the thread that
// made the listener (the MPI thread); the accessors are for that thread, after the call.
class GangListener final : public GangLink {
 public:
  GangListener(MPI_Comm gateway, uint64_t task_key, absl::Time deadline, TaskSignals& signals,
               TaskBacklog& backlog, Heartbeat& heartbeat)
      : gateway_(gateway),
        task_key_(task_key),
        deadline_(deadline),
        signals_(signals),
        backlog_(backlog),
        heartbeat_(heartbeat),
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
      absl::StatusOr<Heard> heard = HearGateway(gateway_, backlog_, heartbeat_);
      status_ = heard.status();
      // A gang runs in the worker itself: even a forced cancel can only interrupt it.
      bool force = false;
      if (heard.ok() && heard->Cancels(task_key_, force)) {
        signals_.cancelled.store(true, std::memory_order_relaxed);
      }
      shutdown_ = heard.ok() && heard->shutdown;
      if (shutdown_) disconnect_ = heard->disconnect;
    }
    timed_out_ = timed_out_ || now >= deadline_;
    // A shutdown, the run timeout, or a gateway that cannot be heard stops the call; the loop
    // acts after it.
    if (shutdown_ || timed_out_ || !status_.ok()) {
      signals_.cancelled.store(true, std::memory_order_relaxed);
    }
  }

  // The first error in talking to the gateway.
  const absl::Status& status() const { return status_; }
  // True if the gateway said shut down during the call, and whether to disconnect then.
  bool shutdown() const { return shutdown_; }
  bool disconnect() const { return disconnect_; }
  // True if the call ran past its run timeout.
  bool timed_out() const { return timed_out_; }

 private:
  const MPI_Comm gateway_;
  const uint64_t task_key_;
  const absl::Time deadline_;
  TaskSignals& signals_;
  TaskBacklog& backlog_;
  Heartbeat& heartbeat_;
  const std::thread::id mpi_thread_;
  absl::Time next_listen_ = absl::InfinitePast();
  absl::Time next_progress_ = absl::InfinitePast();
  bool shutdown_ = false;
  bool disconnect_ = true;
  bool timed_out_ = false;
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

// Runs this worker's part of the gang task `task` on the calling thread, which must own MPI, and
// leaves its outcome in `result`. Returns true if the gateway said shut down during the call (the
// result is then not wanted; `disconnect` says whether to disconnect then); an error only if MPI
// fails outside the function.
absl::StatusOr<bool> RunGang(MPI_Comm gateway, const WorkerGroup& workers,
                             const FunctionRegistry& registry, const TaskContext& context,
                             const wire::TaskFrame& task, TaskSignals& signals,
                             TaskBacklog& backlog, Heartbeat& heartbeat, wire::ResultFrame& result,
                             bool& disconnect) {
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
  GangListener listener(gateway, task.task_key(), RunDeadline(task.run_timeout_ms(), absl::Now()),
                        signals, backlog, heartbeat);
  const GangContext gang(context, *comm, static_cast<int>(me - task.gang().begin()),
                         task.gang_size(), &listener);
  result = RunGangTask(registry, gang, task);
  if (listener.timed_out()) FailPastDeadline(task.run_timeout_ms(), "interrupted", result);
  if (const int rc = MPI_Comm_free(&*comm); rc != MPI_SUCCESS) {
    return wire::MpiError(rc, "MPI_Comm_free");
  }
  if (!listener.status().ok()) return listener.status();
  disconnect = listener.disconnect();
  return listener.shutdown();
}

}  // namespace

WorkerLoop::WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry,
                       int rank, int pool_size, Initializer initializer,
                       absl::Duration hello_timeout, std::optional<RunnerProcess::Options> runner)
    : gateway_(gateway),
      workers_(workers),
      registry_(registry),
      rank_(rank),
      pool_size_(pool_size),
      initializer_(std::move(initializer)),
      hello_timeout_(hello_timeout),
      runner_options_(std::move(runner)) {}

WorkerLoop::~WorkerLoop() = default;

absl::StatusOr<LoopEnd> WorkerLoop::Run() {
  // Ends this process if the hello does not go in time (WorkerOptions::hello_timeout).
  HelloDeadline hello_deadline(hello_timeout_);
  wire::HelloFrame hello = BaseHello();
  // Without a doorbell the loop polls with its backoff alone: slower to wake, never wrong.
  if (absl::StatusOr<wire::Doorbell> doorbell = wire::Doorbell::Open(); doorbell.ok()) {
    hello.set_doorbell(doorbell->address());
    doorbell_ = *std::move(doorbell);
  }
  // Before any task code runs here (the initializer, in process or for gang functions).
  ArmDeathNote(doorbell_.has_value() ? wire::DeathNotePath(doorbell_->address()) : "");
  bool has_gang_functions = false;
  for (const auto& [name, definition] : registry_.definitions()) {
    wire::FunctionEntry& function = *hello.add_functions();
    function.set_name(name);
    function.set_description(definition.description);
    function.set_request_type(definition.request_type);
    function.set_response_type(definition.response_type);
    function.set_gang(static_cast<bool>(definition.gang_function));
    has_gang_functions = has_gang_functions || function.gang();
  }
  // The initializer runs wherever task code runs: in the runner (which runs it before its hello)
  // or on the task thread, and for gang functions on this thread too.
  std::optional<TaskThread> task_thread;
  std::optional<wire::ErrorInfo> initializer_error;
  const TaskContext init_context(rank_, pool_size_);
  if (runner_options_.has_value()) {
    absl::StatusOr<wire::HelloFrame> runner_hello = StartRunner();
    if (runner_hello.ok() && runner_hello->has_error()) {
      runner_hello = absl::Status(static_cast<absl::StatusCode>(runner_hello->error().code()),
                                  absl::StrCat("task runner: ", runner_hello->error().message()));
    }
    if (runner_hello.ok()) {
      hello.set_runner_pid(static_cast<int32_t>(runner_->pid()));
      if (runner_hello->has_initializer_error()) {
        initializer_error = runner_hello->initializer_error();
      }
    } else if (absl::IsAborted(runner_hello.status()) && !initializer_.function.empty()) {
      // The runner died before its hello, in the initializer.
      initializer_error.emplace();
      SetError(absl::AbortedError(absl::StrCat("initializer '", initializer_.function,
                                               "' failed: ", runner_hello.status().message())),
               *initializer_error);
    } else {
      SetError(runner_hello.status(), *hello.mutable_error());
      wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kHello, hello).IgnoreError();
      return runner_hello.status();
    }
    if (!initializer_error.has_value() && has_gang_functions) {
      initializer_error = RunInitializer(registry_, init_context, initializer_);
    }
  } else {
    task_thread.emplace();
    // On the task thread, like every task, so that thread-local state it sets up is theirs.
    task_thread->Start(
        [&] { initializer_error = RunInitializer(registry_, init_context, initializer_); });
    task_thread->AwaitIdle(absl::InfiniteDuration());
  }
  if (initializer_error.has_value()) *hello.mutable_initializer_error() = *initializer_error;
  hello.set_shared_memory_domain(SharedMemoryDomain());
  // For tests only (worker_loss_test): a worker that hangs before its hello, as one whose
  // initializer never returns would, while the file this names exists.
  if (const char* stall = std::getenv("MPIGATE_TEST_STALL_BEFORE_HELLO");
      stall != nullptr && access(stall, F_OK) == 0) {
    while (true) pause();
  }
  if (absl::Status status = wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kHello, hello);
      !status.ok()) {
    return status;
  }
  hello_deadline.Met();

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
  // Shared with the running job, which outlives this function if a shutdown abandons it.
  struct Slot {
    wire::TaskFrame task;
    wire::ResultFrame result;
    TaskSignals signals;
  };
  const auto slot = std::make_shared<Slot>();
  while (true) {
    // Everything that has come first, so that a cancel reaches a task waiting in the backlog
    // before it would start.
    absl::StatusOr<Heard> heard = HearGateway(gateway_, backlog_, heartbeat_);
    if (!heard.ok()) return heard.status();
    if (heard->shutdown) {
      disconnect_ = heard->disconnect;
      return Stop();
    }
    ring_unheard_ = ring_unheard_ && !heard->anything;
    if (backlog_.empty()) {
      if (heard->anything) {
        backoff.Reset();
        continue;
      }
      // Unless a ring it took is still unanswered (its frame not yet here).
      if (after_task && gateway_rings_ && !ring_unheard_) backoff.SettleAfterHotPolls();
      after_task = false;
      const absl::Duration delay = backoff.NextDelay();
      if (delay == absl::ZeroDuration()) continue;
      if (doorbell_.has_value()) {
        if (doorbell_->Wait(gateway_rings_ && backoff.Settled() ? kIdleWait : delay)) {
          gateway_rings_ = true;
          backoff.Reset();
        }
      } else {
        absl::SleepFor(delay);
      }
      continue;
    }
    backoff.Reset();
    after_task = true;
    if (runner_options_.has_value() && !backlog_.front_is_gang()) {
      absl::StatusOr<TaskEnd> end = ServeRunner();
      if (!end.ok()) return end.status();
      if (*end == TaskEnd::kShutdown) return Stop();
      continue;
    }
    TaskBacklog::Entry next = backlog_.TakeFront();
    if (absl::Status status = wire::Decode(next.frame, slot->task); !status.ok()) {
      return status;
    }
    slot->signals.Reset();
    if (slot->task.gang_size() > 0) {
      // Here, not on the task thread: the gang function makes MPI calls, and MPI is this thread's.
      const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
      // Its function may block in a collective for as long as it likes, not listening.
      if (absl::Status status = heartbeat_.Quiet(gateway_); !status.ok()) return status;
      absl::StatusOr<bool> shutdown =
          RunGang(gateway_, workers_, registry_, context, slot->task, slot->signals, backlog_,
                  heartbeat_, slot->result, disconnect_);
      heartbeat_.Loud();
      if (!shutdown.ok()) return shutdown.status();
      if (*shutdown) return Stop();
    } else {
      task_thread->Start([this, slot] {
        const TaskContext context(rank_, pool_size_, &slot->signals.cancelled, &slot->signals);
        slot->result = RunTask(registry_, context, slot->task);
      });
      // A function in this process cannot be killed: past its run timeout it is interrupted.
      const absl::Time deadline = RunDeadline(slot->task.run_timeout_ms(), absl::Now());
      bool timed_out = false;
      while (!task_thread->AwaitIdle(kListenWhileBusy)) {
        if (absl::Status status = ForwardProgress(gateway_, slot->task.task_key(), slot->signals);
            !status.ok()) {
          return status;
        }
        absl::StatusOr<Heard> heard = HearGateway(gateway_, backlog_, heartbeat_);
        if (!heard.ok()) return heard.status();
        bool force = false;  // A function in this process cannot be killed: force interrupts.
        if (heard->shutdown) {
          disconnect_ = heard->disconnect;
          if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
          return LoopEnd::kStoppedDuringTask;
        }
        timed_out = timed_out || absl::Now() >= deadline;
        if (heard->Cancels(slot->task.task_key(), force) || timed_out) {
          slot->signals.cancelled.store(true, std::memory_order_relaxed);
        }
      }
      if (timed_out) FailPastDeadline(slot->task.run_timeout_ms(), "interrupted", slot->result);
    }
    if (absl::Status status =
            wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kResult, slot->result);
        !status.ok()) {
      return status;
    }
    slot->result.Clear();
  }
}

absl::StatusOr<LoopEnd> WorkerLoop::Stop() {
  // Gone before the gateway hears the goodbye: once it has, the pool may be taken down.
  runner_.reset();
  if (absl::Status status = SayGoodbye(gateway_); !status.ok()) return status;
  return LoopEnd::kStopped;
}

absl::StatusOr<wire::HelloFrame> WorkerLoop::StartRunner() {
  runner_.reset();
  // The runner's initializer may take its time, and the loop does not listen meanwhile.
  if (absl::Status status = heartbeat_.Quiet(gateway_); !status.ok()) return status;
  absl::Cleanup loud = [this] { heartbeat_.Loud(); };
  absl::StatusOr<std::unique_ptr<RunnerProcess>> spawned = RunnerProcess::Spawn(*runner_options_);
  if (!spawned.ok()) return spawned.status();
  runner_ = *std::move(spawned);
  absl::StatusOr<wire::HelloFrame> hello = runner_->AwaitHello();
  if (!hello.ok()) runner_.reset();
  return hello;
}

absl::Status WorkerLoop::ReplaceRunner() {
  absl::StatusOr<wire::HelloFrame> hello = StartRunner();
  absl::Status status = hello.status();
  if (hello.ok() && hello->has_error()) {
    status = absl::InternalError(hello->error().message());
  } else if (hello.ok() && hello->has_initializer_error()) {
    status = absl::FailedPreconditionError(hello->initializer_error().message());
  }
  if (!status.ok()) runner_.reset();
  return status;
}

absl::Status WorkerLoop::Answer(const wire::ResultFrame& result) {
  if (absl::Status status = FlushResults(); !status.ok()) return status;
  return wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kResult, result);
}

absl::StatusOr<bool> WorkerLoop::EnsureRunner() {
  // An idle runner sends nothing, so anything it has to say now is that it died between tasks
  // (the OOM killer may pick it while idle): no task had a part in that.
  if (runner_ != nullptr && runner_->Await(absl::ZeroDuration()).kind != RunnerEvent::Kind::kNone) {
    runner_.reset();
  }
  // The last runner died idle, or its replacement could not start (it died starting, or its
  // initializer failed): start one before failing the tasks. A runner that cannot start is a lost
  // runner, so the gateway may retry the tasks elsewhere.
  absl::Status started;
  for (int attempt = 0; runner_ == nullptr && attempt < kRunnerStartAttempts; ++attempt) {
    started = ReplaceRunner();
  }
  if (runner_ != nullptr) return true;
  const std::string why = absl::StrCat("no task runner could start (", kRunnerStartAttempts,
                                       " tries); the last: ", started.message());
  while (!backlog_.empty() && !backlog_.front_is_gang()) {
    wire::ResultFrame failed;
    failed.set_task_key(backlog_.TakeFront().header.task_key);
    SetError(absl::AbortedError(why), *failed.mutable_error());
    failed.set_runner_lost(true);
    if (absl::Status status = Answer(failed); !status.ok()) return status;
  }
  return false;
}

void WorkerLoop::FeedRunner(absl::Time now) {
  // Small tasks go over all at once, in one write; a large one waits until the runner is done with
  // the rest, so that the socket never holds more than one large payload.
  constexpr size_t kQueueBytes = 1 << 20;
  std::vector<absl::string_view> frames;
  while (!backlog_.empty() && !backlog_.front_is_gang() &&
         (in_runner_.empty() || in_runner_bytes_ + backlog_.front_bytes() <= kQueueBytes)) {
    if (in_runner_.empty()) front_started_ = now;
    // A deque keeps its elements in place as it grows: the views stay valid.
    TaskBacklog::Entry& entry = in_runner_.emplace_back(backlog_.TakeFront());
    in_runner_bytes_ += entry.frame.size();
    frames.push_back(entry.frame);
  }
  if (!frames.empty()) runner_->SendTasks(frames);
}

absl::Status WorkerLoop::FlushResults() {
  if (unsent_results_.empty()) return absl::OkStatus();
  absl::Status status;
  if (unsent_results_.size() == 1) {
    // As the runner encoded it: the payload is not copied again.
    status = wire::SendEncoded(gateway_, kGatewayRank, wire::Tag::kResult, unsent_results_[0]);
  } else {
    wire::FrameBatch batch;
    for (std::string& result : unsent_results_) batch.add_frames(std::move(result));
    absl::StatusOr<std::string> encoded = wire::Encode(batch);
    status = encoded.ok() ? wire::SendEncoded(gateway_, kGatewayRank, wire::Tag::kResults, *encoded)
                          : encoded.status();
  }
  unsent_results_.clear();
  unsent_bytes_ = 0;
  return status;
}

absl::Status WorkerLoop::FailFrontAndRestart(wire::ResultFrame failed, absl::Time start) {
  failed.set_task_key(in_runner_.front().header.task_key);
  failed.set_run_us(static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start)));
  in_runner_bytes_ -= in_runner_.front().frame.size();
  in_runner_.pop_front();
  if (absl::Status status = Answer(failed); !status.ok()) return status;
  // After the answer, so that the gateway need not wait for the new runner's start. The tasks
  // queued behind never started: they go to the new runner, or back to the backlog's front to be
  // failed (or tried again) there if it cannot start.
  ReplaceRunner().IgnoreError();
  for (const TaskBacklog::Entry& entry : in_runner_) {
    if (!entry.interrupted) continue;
    if (absl::Status status = Answer(DroppedBeforeStart(entry.header.task_key)); !status.ok()) {
      return status;
    }
  }
  while (!in_runner_.empty()) {
    if (!in_runner_.back().interrupted) backlog_.PushFront(std::move(in_runner_.back()));
    in_runner_.pop_back();
  }
  in_runner_bytes_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<WorkerLoop::TaskEnd> WorkerLoop::ServeRunner() {
  absl::StatusOr<bool> runner_up = EnsureRunner();
  if (!runner_up.ok()) return runner_up.status();
  if (!*runner_up) return TaskEnd::kEnded;
  const absl::Time start = absl::Now();
  absl::Time next_listen = start + kListenWhileBusy;
  FeedRunner(start);
  // Until the runner has answered every task it was given, or one is failed here after the runner
  // died or was killed under it.
  while (!in_runner_.empty()) {
    const TaskBacklog::Entry& front = in_runner_.front();
    const absl::Time now = absl::Now();
    const absl::Time deadline = RunDeadline(front.header.run_timeout_ms, front_started_);
    wire::ResultFrame failed;
    if (now >= deadline) {
      runner_->Kill();
      SetError(absl::DeadlineExceededError(absl::StrCat("task ran past its run timeout of ",
                                                        front.header.run_timeout_ms,
                                                        " ms and was killed")),
               *failed.mutable_error());
      if (absl::Status status = FailFrontAndRestart(std::move(failed), front_started_);
          !status.ok()) {
        return status;
      }
      return TaskEnd::kEnded;
    }
    if (now >= next_listen) {
      next_listen = now + kListenWhileBusy;
      absl::StatusOr<Heard> heard = HearGateway(gateway_, backlog_, heartbeat_);
      if (!heard.ok()) return heard.status();
      ring_unheard_ = ring_unheard_ && !heard->anything;
      if (heard->shutdown) {
        disconnect_ = heard->disconnect;
        if (absl::Status status = FlushResults(); !status.ok()) return status;
        return TaskEnd::kShutdown;
      }
      bool force = false;
      if (heard->Cancels(front.header.task_key, force) && force) {
        // The other tasks it names never started: mark them, so that they are dropped.
        for (TaskBacklog::Entry& entry : in_runner_) {
          bool unused = false;
          entry.interrupted = entry.interrupted || heard->Cancels(entry.header.task_key, unused);
        }
        runner_->Kill();
        SetError(absl::CancelledError("task was killed by a forced cancel"),
                 *failed.mutable_error());
        if (absl::Status status = FailFrontAndRestart(std::move(failed), front_started_);
            !status.ok()) {
          return status;
        }
        return TaskEnd::kEnded;
      }
      // The runner sets the running task's flag, and drops one still queued (it never starts).
      for (const wire::CancelFrame& cancel : heard->cancels) {
        for (TaskBacklog::Entry& entry : in_runner_) {
          if (entry.header.task_key != cancel.task_key()) continue;
          entry.interrupted = true;
          runner_->SendCancel(cancel.task_key());
        }
      }
      FeedRunner(now);
    }
    // A gateway that rings says when it has sent something: the runner's results need not each
    // be followed by a poll of MPI, which costs more than a no-op task. (Only a worker with a
    // doorbell is ever rung.)
    const bool listen_on_ring = gateway_rings_;
    RunnerEvent event =
        runner_->Await(std::min(next_listen, deadline) - now, listen_on_ring ? doorbell_->fd() : -1);
    if (event.kind == RunnerEvent::Kind::kNone && listen_on_ring &&
        doorbell_->Wait(absl::ZeroDuration())) {
      ring_unheard_ = true;
      next_listen = absl::Now();
      continue;
    }
    if (event.kind == RunnerEvent::Kind::kResult) {
      absl::StatusOr<uint64_t> answered = wire::PeekResultKey(event.result);
      // Results the runner wrote in a burst go to the gateway in one message; a large one alone.
      if (event.result.size() >= kResultBatchBytes) {
        if (absl::Status status = FlushResults(); !status.ok()) return status;
      }
      unsent_bytes_ += event.result.size();
      unsent_results_.push_back(std::move(event.result));
      if (!runner_->HasBufferedFrame() || unsent_bytes_ >= kResultBatchBytes) {
        if (absl::Status status = FlushResults(); !status.ok()) return status;
      }
      // In order, but for a task the runner dropped from its queue.
      const uint64_t key = answered.ok() ? *answered : front.header.task_key;
      const auto it = std::find_if(
          in_runner_.begin(), in_runner_.end(),
          [key](const TaskBacklog::Entry& entry) { return entry.header.task_key == key; });
      if (it == in_runner_.end()) continue;
      const bool was_front = it == in_runner_.begin();
      in_runner_bytes_ -= it->frame.size();
      in_runner_.erase(it);
      const absl::Time done = absl::Now();
      if (was_front) front_started_ = done;
      // Keep the runner fed: take what the gateway has sent meanwhile once it runs dry. Without
      // rings, or after a ring that ran ahead of its frame, by polling after each result.
      if (backlog_.empty() && (!listen_on_ring || ring_unheard_)) next_listen = done;
      FeedRunner(done);
    } else if (event.kind == RunnerEvent::Kind::kProgress) {
      if (absl::Status status = FlushResults(); !status.ok()) return status;
      if (absl::Status status =
              wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kProgress, event.progress);
          !status.ok()) {
        return status;
      }
    } else if (event.kind == RunnerEvent::Kind::kDied) {
      SetError(absl::AbortedError(event.death), *failed.mutable_error());
      failed.set_runner_lost(true);
      if (absl::Status status = FailFrontAndRestart(std::move(failed), front_started_);
          !status.ok()) {
        return status;
      }
      return TaskEnd::kEnded;
    }
  }
  if (absl::Status status = FlushResults(); !status.ok()) return status;
  return TaskEnd::kEnded;
}

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

absl::Status Heartbeat::MaybeSend(MPI_Comm gateway) {
  if (interval_ == absl::InfiniteDuration() || absl::Now() < next_) return absl::OkStatus();
  return Send(gateway);
}

absl::Status Heartbeat::Quiet(MPI_Comm gateway) {
  if (interval_ == absl::InfiniteDuration() || quiet_) return absl::OkStatus();
  quiet_ = true;
  return Send(gateway);
}

void Heartbeat::Loud() {
  if (!quiet_) return;
  quiet_ = false;
  next_ = absl::InfinitePast();
}

absl::Status Heartbeat::Send(MPI_Comm gateway) {
  wire::HeartbeatFrame beat;
  beat.set_quiet(quiet_);
  next_ = absl::Now() + interval_;
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHeartbeat, beat);
}

absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why) {
  wire::HelloFrame hello = BaseHello();
  hello.mutable_error()->set_code(static_cast<int>(why.code()));
  hello.mutable_error()->set_message(std::string(why.message()));
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHello, hello);
}

}  // namespace mpigate::worker
