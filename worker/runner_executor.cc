#include "worker/runner_executor.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "wire/task_peek.h"
#include "wire/wire_error.h"
#include "worker/run_timeout.h"

namespace mpigate::worker {
namespace {

// How many times a worker tries to start a task runner for a task before failing it.
constexpr int kRunnerStartAttempts = 3;

// The bytes of tasks queued in the runner at once: small tasks go over all at once, in one write;
// a large one waits until the runner is done with the rest, so that the socket never holds more
// than one large payload.
constexpr size_t kQueueBytes = 1 << 20;

bool HasGangFunctions(const FunctionRegistry& registry) {
  return std::any_of(
      registry.definitions().begin(), registry.definitions().end(),
      [](const auto& entry) { return static_cast<bool>(entry.second.gang_function); });
}

}  // namespace

RunnerExecutor::RunnerExecutor(GatewayLink& link, TaskBacklog& backlog,
                               const FunctionRegistry& registry, int rank, int pool_size,
                               Initializer initializer, RunnerProcess::Options options)
    : link_(link),
      backlog_(backlog),
      registry_(registry),
      rank_(rank),
      pool_size_(pool_size),
      initializer_(std::move(initializer)),
      options_(std::move(options)) {}

RunnerExecutor::~RunnerExecutor() = default;

absl::Status RunnerExecutor::Start(wire::HelloFrame& hello) {
  absl::StatusOr<wire::HelloFrame> runner_hello = StartRunner();
  if (runner_hello.ok() && runner_hello->has_error()) {
    runner_hello = absl::Status(CanonicalCode(runner_hello->error().code()),
                                absl::StrCat("task runner: ", runner_hello->error().message()));
  }
  std::optional<wire::ErrorInfo> initializer_error;
  if (runner_hello.ok()) {
    hello.set_runner_pid(static_cast<int32_t>(runner_->pid()));
    if (runner_hello->has_initializer_error()) {
      initializer_error = runner_hello->initializer_error();
    }
  } else if (absl::IsAborted(runner_hello.status()) && !initializer_.function.empty()) {
    // The runner died before its hello, in the initializer.
    initializer_error.emplace();
    wire::SetError(absl::AbortedError(absl::StrCat("initializer '", initializer_.function,
                                                   "' failed: ", runner_hello.status().message())),
                   *initializer_error);
  } else {
    return runner_hello.status();
  }
  // Gang functions run on the MPI thread: the initializer runs there too.
  if (!initializer_error.has_value() && HasGangFunctions(registry_)) {
    initializer_error = RunInitializer(registry_, TaskContext(rank_, pool_size_), initializer_);
  }
  if (initializer_error.has_value()) *hello.mutable_initializer_error() = *initializer_error;
  return absl::OkStatus();
}

absl::StatusOr<wire::HelloFrame> RunnerExecutor::StartRunner() {
  runner_.reset();
  absl::StatusOr<std::unique_ptr<RunnerProcess>> spawned = RunnerProcess::Spawn(options_);
  if (!spawned.ok()) return spawned.status();
  runner_ = *std::move(spawned);
  // The runner's initializer may take its time. The worker does not listen meanwhile (what the
  // gateway sends waits in MPI), but its heartbeats go on, so that its loss in the meantime is
  // seen (on another host nothing else tells).
  while (true) {
    absl::StatusOr<std::optional<wire::HelloFrame>> hello = runner_->AwaitHello(kListenWhileBusy);
    if (!hello.ok()) {
      runner_.reset();
      return hello.status();
    }
    if (hello->has_value()) return **std::move(hello);
    if (absl::Status status = link_.Beat(); !status.ok()) return status;
  }
}

absl::Status RunnerExecutor::ReplaceRunner() {
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

absl::StatusOr<bool> RunnerExecutor::EnsureRunner() {
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
    wire::SetError(absl::AbortedError(why), *failed.mutable_error());
    failed.set_runner_lost(true);
    if (absl::Status status = link_.Answer(failed); !status.ok()) return status;
  }
  return false;
}

void RunnerExecutor::FeedRunner(absl::Time now) {
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

absl::Status RunnerExecutor::FailFrontAndRestart(wire::ResultFrame failed) {
  failed.set_task_key(in_runner_.front().header.task_key);
  failed.set_run_us(static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - front_started_)));
  in_runner_bytes_ -= in_runner_.front().frame.size();
  in_runner_.pop_front();
  if (absl::Status status = link_.Answer(failed); !status.ok()) return status;
  // After the answer, so that the gateway need not wait for the new runner's start. The tasks
  // queued behind never started: they go to the new runner, or back to the backlog's front to be
  // failed (or tried again) there if it cannot start.
  ReplaceRunner().IgnoreError();
  for (const TaskBacklog::Entry& entry : in_runner_) {
    if (!entry.interrupted) continue;
    if (absl::Status status = link_.Answer(DroppedBeforeStart(entry.header.task_key));
        !status.ok()) {
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

absl::StatusOr<ServeEnd> RunnerExecutor::Serve() {
  absl::StatusOr<bool> runner_up = EnsureRunner();
  if (!runner_up.ok()) return runner_up.status();
  if (!*runner_up) return ServeEnd::kServed;
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
      FailPastDeadline(front.header.run_timeout_ms, "killed", failed);
      if (absl::Status status = FailFrontAndRestart(std::move(failed)); !status.ok()) {
        return status;
      }
      return ServeEnd::kServed;
    }
    if (now >= next_listen) {
      next_listen = now + kListenWhileBusy;
      absl::StatusOr<Heard> heard = link_.Hear();
      if (!heard.ok()) return heard.status();
      if (heard->shutdown) return ServeEnd::kShutdown;
      bool force = false;
      if (heard->Cancels(front.header.task_key, force) && force) {
        // The other tasks it names never started: mark them, so that they are dropped.
        for (TaskBacklog::Entry& entry : in_runner_) {
          bool unused = false;
          entry.interrupted = entry.interrupted || heard->Cancels(entry.header.task_key, unused);
        }
        runner_->Kill();
        wire::SetError(absl::CancelledError("task was killed by a forced cancel"),
                       *failed.mutable_error());
        if (absl::Status status = FailFrontAndRestart(std::move(failed)); !status.ok()) {
          return status;
        }
        return ServeEnd::kServed;
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
    const bool listen_on_ring = link_.rings();
    RunnerEvent event = runner_->Await(std::min(next_listen, deadline) - now, link_.ring_fd());
    if (event.kind == RunnerEvent::Kind::kNone && link_.TakeRing()) {
      next_listen = absl::Now();
      continue;
    }
    if (event.kind == RunnerEvent::Kind::kResult) {
      absl::StatusOr<uint64_t> answered = wire::PeekResultKey(event.result);
      if (absl::Status status =
              link_.AddRunnerResult(std::move(event.result), runner_->HasBufferedFrame());
          !status.ok()) {
        return status;
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
      if (backlog_.empty() && (!listen_on_ring || link_.ring_unheard())) next_listen = done;
      FeedRunner(done);
    } else if (event.kind == RunnerEvent::Kind::kProgress) {
      if (absl::Status status = link_.Send(wire::Tag::kProgress, event.progress); !status.ok()) {
        return status;
      }
    } else if (event.kind == RunnerEvent::Kind::kDied) {
      wire::SetError(absl::AbortedError(event.death), *failed.mutable_error());
      failed.set_runner_lost(true);
      if (absl::Status status = FailFrontAndRestart(std::move(failed)); !status.ok()) {
        return status;
      }
      return ServeEnd::kServed;
    }
  }
  if (absl::Status status = link_.FlushResults(); !status.ok()) return status;
  return ServeEnd::kServed;
}

}  // namespace mpigate::worker
