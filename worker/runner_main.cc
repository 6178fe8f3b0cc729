// mpigate-runner: a task runner, the process in which a worker runs its plain, chunk and range
// tasks so that a function that crashes takes down only this process (worker/runner_process.h is
// the worker's side). Started by a worker, never by hand.
//
// It never initialises MPI (a task library may link libmpi for its gang functions; loading it is
// harmless). It loads the same functions as its worker (built-ins, exec if allowed, the task
// libraries), runs the pool's initializer, says hello, then serves task frames from the socket on
// fd 3 until the stream ends. Two threads:
//   - the main thread runs the initializer and then each task (RunTask), in the order they came,
//     and writes its result;
//   - a reader thread reads frames: it queues tasks for the main thread (a worker with a backlog
//     hands over several at once, so that the main thread goes from one to the next without a
//     wake-up), sets the running task's cancellation flag on a cancel or, for a task still queued,
//     drops it and answers CANCELLED at once, and sends the latest progress report at most every
//     20 ms. It exits the process when the stream ends: the worker is gone or done with this
//     runner.
// Idle, both threads block (in read and on a condition): no polling.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "wire/frames.pb.h"
#include "wire/stream_frames.h"
#include "wire/task_peek.h"
#include "worker/registry.h"
#include "worker/task_environment.h"
#include "worker/task_runner.h"
#include "worker/worker_options.h"

namespace mpigate::worker {
namespace {

// The worker's socket (runner_process.cc puts it here).
constexpr int kSocketFd = 3;

// The most often a running task's progress goes to the worker; the worker forwards it to the
// gateway at the same pace, and only the latest report matters.
constexpr absl::Duration kProgressInterval = absl::Milliseconds(20);

// The worker is gone (or its stream is broken): nothing is waiting for anything from here, and a
// task may be stuck, so leave without unwinding.
[[noreturn]] void Leave(const absl::Status& why) {
  if (!absl::IsOutOfRange(why)) {
    std::fprintf(stderr, "mpigate-runner %d: %s\n", static_cast<int>(getpid()),
                 why.ToString().c_str());
  }
  std::_Exit(absl::IsOutOfRange(why) ? 0 : 1);
}

void SetError(const absl::Status& status, wire::ErrorInfo& error) {
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
}

class Runner final : public ProgressSink {
 public:
  Runner(const FunctionRegistry& registry, int rank, int pool_size)
      : registry_(registry), rank_(rank), pool_size_(pool_size) {}

  // Starts the reader thread and runs tasks until the stream ends; never returns.
  [[noreturn]] void Serve() {
    std::thread(&Runner::ReadFrames, this).detach();
    while (true) RunNextTask();
  }

  // From the task's threads: keeps the latest report, and sends it at once unless one went less
  // than kProgressInterval ago (the reader thread sends it when that has passed).
  void Report(double fraction, absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    if (!running_) return;
    progress_.set_fraction(fraction);
    progress_.set_message(std::string(message));
    progress_pending_ = true;
    SendDueProgress();
  }

 private:
  struct QueuedTask {
    uint64_t task_key = 0;
    std::string frame;
  };

  bool HasTask() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queued_.empty(); }

  void RunNextTask() {
    std::string bytes;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Runner::HasTask));
      bytes = std::move(queued_.front().frame);
      running_ = true;
      running_key_ = queued_.front().task_key;
      queued_.pop_front();
      cancelled_.store(false, std::memory_order_relaxed);
      progress_.Clear();
      progress_.set_task_key(running_key_);
      progress_pending_ = false;
      next_progress_ = absl::InfinitePast();
    }
    wire::TaskFrame task;
    wire::ResultFrame result;
    if (task.ParseFromString(bytes)) {
      bytes.clear();
      bytes.shrink_to_fit();
      const TaskContext context(rank_, pool_size_, &cancelled_, this);
      environment_.Apply(task.env());
      result = RunTask(registry_, context, task);
    } else {
      SetError(absl::InternalError(absl::StrCat("malformed TaskFrame of ", bytes.size(), " bytes")),
               *result.mutable_error());
    }
    task.Clear();
    std::string encoded;
    // The worker forwards it as one MPI message, whose count is an int.
    if (result.ByteSizeLong() > static_cast<size_t>(INT_MAX)) {
      const size_t size = result.ByteSizeLong();
      const uint64_t key = result.task_key();
      result.Clear();
      result.set_task_key(key);
      SetError(absl::ResourceExhaustedError(absl::StrCat(
                   "the result of ", size, " bytes exceeds the 2 GiB limit of one MPI message")),
               *result.mutable_error());
    }
    result.SerializeToString(&encoded);
    result.Clear();
    absl::MutexLock lock(&mu_);
    // Under the lock that progress is sent under: no report of this task can follow its result.
    running_ = false;
    progress_pending_ = false;
    if (absl::Status status = wire::WriteFrame(kSocketFd, wire::Tag::kResult, encoded);
        !status.ok()) {
      Leave(status);
    }
  }

  // The reader thread.
  void ReadFrames() {
    wire::FrameReader reader(kSocketFd);
    while (true) {
      // Frames read ahead come first; only then wait for the socket.
      if (!reader.HasFrame()) {
        bool running;
        {
          absl::MutexLock lock(&mu_);
          running = running_;
        }
        // While a task runs, wake every interval to send a report that had to wait.
        pollfd socket = {kSocketFd, POLLIN, 0};
        const int ready =
            poll(&socket, 1,
                 running ? static_cast<int>(absl::ToInt64Milliseconds(kProgressInterval)) : -1);
        if (running) {
          absl::MutexLock lock(&mu_);
          SendDueProgress();
        }
        if (ready <= 0) continue;  // The interval passed, or a signal interrupted the wait.
      }
      absl::StatusOr<wire::StreamFrame> frame = reader.Next();
      if (!frame.ok()) Leave(frame.status());
      if (frame->tag == wire::Tag::kTask) {
        absl::StatusOr<wire::TaskHeader> header = wire::PeekTask(frame->bytes);
        absl::MutexLock lock(&mu_);
        queued_.push_back(QueuedTask{header.ok() ? header->task_key : 0, std::move(frame->bytes)});
        continue;
      }
      wire::CancelFrame cancel;
      if (frame->tag != wire::Tag::kCancel || !cancel.ParseFromString(frame->bytes)) {
        Leave(absl::InternalError(absl::StrCat("unexpected frame with tag ",
                                               static_cast<int>(frame->tag), " from the worker")));
      }
      absl::MutexLock lock(&mu_);
      if (running_ && cancel.task_key() == running_key_) {
        cancelled_.store(true, std::memory_order_relaxed);
        continue;
      }
      // A task still queued never starts; a cancel that crossed its task's result finds nothing.
      const auto queued = std::find_if(
          queued_.begin(), queued_.end(),
          [&cancel](const QueuedTask& task) { return task.task_key == cancel.task_key(); });
      if (queued == queued_.end()) continue;
      queued_.erase(queued);
      if (absl::Status status = wire::WriteFrame(kSocketFd, wire::Tag::kResult,
                                                 DroppedBeforeStart(cancel.task_key()));
          !status.ok()) {
        Leave(status);
      }
    }
  }

  void SendDueProgress() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!progress_pending_) return;
    const absl::Time now = absl::Now();
    if (now < next_progress_) return;
    next_progress_ = now + kProgressInterval;
    progress_pending_ = false;
    if (absl::Status status = wire::WriteFrame(kSocketFd, wire::Tag::kProgress, progress_);
        !status.ok()) {
      Leave(status);
    }
  }

  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  // Made after the initializer has run: the pool's environment, which each task gets with its
  // executor's variables. Used by the main thread only.
  TaskEnvironment environment_;
  // The running task's cancellation flag, set by the reader thread.
  std::atomic<bool> cancelled_{false};

  // Also serialises writes to the socket once the reader thread runs.
  absl::Mutex mu_;
  // Task frames from the worker that the main thread has yet to take, in the order they came.
  std::deque<QueuedTask> queued_ ABSL_GUARDED_BY(mu_);
  // From when the main thread takes a task until its result has been written.
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t running_key_ ABSL_GUARDED_BY(mu_) = 0;
  // The latest report of the running task, and whether it has yet to be sent.
  wire::ProgressFrame progress_ ABSL_GUARDED_BY(mu_);
  bool progress_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_progress_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace
}  // namespace mpigate::worker

int main(int argc, char** argv) {
  using namespace mpigate::worker;
  // Die with the worker, and if it has already died (this process was reparented before it could
  // ask), leave at once.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Debian's Abseil runs a deadlock detector on every lock unless told not to (see server/main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // A worker that has gone away is a write error (EPIPE), not a signal.
  signal(SIGPIPE, SIG_IGN);
  // Programs that task code starts must not hold the worker's socket: the worker sees this
  // runner's end as the end of the stream.
  fcntl(kSocketFd, F_SETFD, FD_CLOEXEC);

  mpigate::wire::HelloFrame hello;
  hello.set_pid(static_cast<int32_t>(getpid()));
  absl::StatusOr<RunnerConfig> config =
      ParseRunnerArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (config.ok() && getppid() != config->worker_pid) return 0;
  FunctionRegistry registry;
  absl::Status status = config.status();
  if (status.ok()) status = LoadFunctions(config->worker, registry);
  if (!status.ok()) {
    SetError(status, *hello.mutable_error());
    mpigate::wire::WriteFrame(kSocketFd, mpigate::wire::Tag::kHello, hello).IgnoreError();
    std::fprintf(stderr, "mpigate-runner: %s\n", status.ToString().c_str());
    return 1;
  }
  // On this thread, which runs every task: thread-local state it sets up is theirs.
  if (std::optional<mpigate::wire::ErrorInfo> failed =
          RunInitializer(registry, mpigate::TaskContext(config->rank, config->pool_size),
                         config->worker.initializer)) {
    *hello.mutable_initializer_error() = *std::move(failed);
  }
  if (absl::Status sent = mpigate::wire::WriteFrame(kSocketFd, mpigate::wire::Tag::kHello, hello);
      !sent.ok()) {
    Leave(sent);
  }
  Runner(registry, config->rank, config->pool_size).Serve();
}
