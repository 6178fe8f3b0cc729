// mpigate-runner: a task runner, the process in which a worker runs its plain, chunk and range
// tasks so that a function that crashes takes down only this process (worker/runner_process.h is
// the worker's side). Started by a worker, never by hand.
//
// It never initialises MPI (a task library may link libmpi for its gang functions; loading it is
// harmless). It loads the same functions as its worker (built-ins, exec if allowed, the task
// libraries), runs the pool's initializer, says hello, then serves task frames from the socket on
// fd 3 until the stream ends. Three threads:
//   - the main thread runs the initializer and then each task (RunTask), in the order they came,
//     and writes its result;
//   - a reader thread reads frames: it queues tasks for the main thread (a worker with a backlog
//     hands over several at once, so that the main thread goes from one to the next without a
//     wake-up), and on a cancel sets the running task's cancellation flag or, for a task still
//     queued, drops it, to be answered CANCELLED at once. It exits the process when the stream
//     ends: the worker is gone or done with this runner. It never writes and never waits for a
//     writer, so that what the worker writes is always taken, however long a write of this
//     process takes: the worker may wait for its write before it reads (worker/
//     runner_process.h), and a runner that stopped reading while it wrote would deadlock with it;
//   - a reporter thread writes the answers to dropped tasks and the running task's latest
//     progress report, at most every 20 ms.
// Writes are serialised by a lock of their own, never held together with the queue's but for
// the moment a progress report is checked against the task's end.
// Idle, all three block (in read and on conditions): no polling. Once the main thread has waited
// kQuietBeforeRelease for a task, it gives the free heap back (common/memory_release.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
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
#include "common/memory_release.h"
#include "wire/frames.pb.h"
#include "wire/stream_frames.h"
#include "wire/task_peek.h"
#include "wire/wire_error.h"
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

// How long the main thread waits for a task before it gives back the free heap a large task left,
// and how much free heap is worth keeping: a stream of tasks never waits this long, and reuses
// what it frees (common/memory_release.h says why it matters).
constexpr absl::Duration kQuietBeforeRelease = absl::Seconds(5);
constexpr uint64_t kKeepFreeBytes = uint64_t{32} << 20;

// The worker is gone (or its stream is broken): nothing is waiting for anything from here, and a
// task may be stuck, so leave without unwinding.
[[noreturn]] void Leave(const absl::Status& why) {
  if (!absl::IsOutOfRange(why)) {
    std::fprintf(stderr, "mpigate-runner %d: %s\n", static_cast<int>(getpid()),
                 why.ToString().c_str());
  }
  std::_Exit(absl::IsOutOfRange(why) ? 0 : 1);
}

// Task code (a task or the initializer) that calls exit() ends this process with its status at
// once, as Leave does: exit() would run the static destructors and a sanitizer's leak check under
// the reader and reporter threads, which go on using what those destructors free, and could end
// the process with another status. What the task wrote to stdio is flushed first, as by exit().
void ExitAtOnce(int status, void*) {
  std::fflush(nullptr);
  std::_Exit(status);
}

class Runner final : public ProgressSink {
 public:
  Runner(const FunctionRegistry& registry, int rank, int pool_size)
      : registry_(registry), rank_(rank), pool_size_(pool_size), pid_(getpid()) {}

  // Starts the reader and reporter threads and runs tasks until the stream ends; never returns.
  [[noreturn]] void Serve() {
    std::thread(&Runner::ReadFrames, this).detach();
    std::thread(&Runner::SendReports, this).detach();
    while (true) RunNextTask();
  }

  // From the task's threads: keeps the latest report for the reporter thread, which sends it at
  // once unless one went less than kProgressInterval ago.
  void Report(double fraction, absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    if (!running_) return;
    progress_.set_fraction(fraction);
    progress_.set_message(std::string(message));
    progress_pending_ = true;
  }

 private:
  struct QueuedTask {
    uint64_t task_key = 0;
    std::string frame;
  };

  bool HasTask() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queued_.empty(); }
  bool HasDropped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !dropped_.empty(); }
  bool HasReport() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !dropped_.empty() || progress_pending_;
  }

  // Writes one frame whole, or leaves: the worker is gone.
  void Write(wire::Tag tag, absl::string_view bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (absl::Status status = wire::WriteFrame(kSocketFd, tag, bytes); !status.ok()) Leave(status);
  }

  // Waits until a task is queued. One that does not come within kQuietBeforeRelease starts an idle
  // spell: the free heap goes back to the system, once, without the lock.
  void AwaitTask() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (mu_.AwaitWithTimeout(absl::Condition(this, &Runner::HasTask), kQuietBeforeRelease)) return;
    mu_.Unlock();
    ReleaseFreeHeap(kKeepFreeBytes);
    mu_.Lock();
    mu_.Await(absl::Condition(this, &Runner::HasTask));
  }

  void RunNextTask() {
    std::string bytes;
    {
      absl::MutexLock lock(&mu_);
      AwaitTask();
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
      wire::SetError(
          absl::InternalError(absl::StrCat("malformed TaskFrame of ", bytes.size(), " bytes")),
          *result.mutable_error());
    }
    task.Clear();
    result.set_runner_pid(static_cast<int32_t>(pid_));
    std::string encoded;
    // The worker forwards it as one MPI message, whose count is an int.
    if (result.ByteSizeLong() > static_cast<size_t>(INT_MAX)) {
      const size_t size = result.ByteSizeLong();
      const uint64_t key = result.task_key();
      result.Clear();
      result.set_task_key(key);
      wire::SetError(
          absl::ResourceExhaustedError(absl::StrCat(
              "the result of ", size, " bytes exceeds the 2 GiB limit of one MPI message")),
          *result.mutable_error());
    }
    result.SerializeToString(&encoded);
    result.Clear();
    {
      absl::MutexLock lock(&mu_);
      running_ = false;
      progress_pending_ = false;
    }
    // A report the reporter thread took before running_ fell is written before this result: it
    // holds write_mu_ from before it looks until it has written. None can follow the result.
    absl::MutexLock write_lock(&write_mu_);
    Write(wire::Tag::kResult, encoded);
  }

  // The reader thread.
  void ReadFrames() {
    wire::FrameReader reader(kSocketFd);
    while (true) {
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
      dropped_.push_back(cancel.task_key());
    }
  }

  // The reporter thread.
  [[noreturn]] void SendReports() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Runner::HasReport));
        // A report that is not due yet waits for its time, unless a drop comes first.
        if (dropped_.empty() && absl::Now() < next_progress_) {
          mu_.AwaitWithDeadline(absl::Condition(this, &Runner::HasDropped), next_progress_);
        }
      }
      absl::MutexLock write_lock(&write_mu_);
      std::vector<uint64_t> dropped;
      std::optional<std::string> progress;
      {
        absl::MutexLock lock(&mu_);
        dropped.swap(dropped_);
        const absl::Time now = absl::Now();
        if (progress_pending_ && now >= next_progress_) {
          progress_pending_ = false;
          next_progress_ = now + kProgressInterval;
          progress = progress_.SerializeAsString();
        }
      }
      for (const uint64_t task_key : dropped) {
        Write(wire::Tag::kResult, DroppedBeforeStart(task_key).SerializeAsString());
      }
      if (progress.has_value()) Write(wire::Tag::kProgress, *progress);
    }
  }

  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  // Named in each result, for the gateway's status.
  const pid_t pid_;
  // Made after the initializer has run: the pool's environment, which each task gets with its
  // executor's variables. Used by the main thread only.
  TaskEnvironment environment_;
  // The running task's cancellation flag, set by the reader thread.
  std::atomic<bool> cancelled_{false};

  // Serialises writes to the socket once the threads run, so that frames go out whole. Taken
  // before mu_ where both are held.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  absl::Mutex mu_;
  // Task frames from the worker that the main thread has yet to take, in the order they came.
  std::deque<QueuedTask> queued_ ABSL_GUARDED_BY(mu_);
  // Tasks dropped from queued_ by a cancel, whose answers the reporter thread has yet to write.
  std::vector<uint64_t> dropped_ ABSL_GUARDED_BY(mu_);
  // From when the main thread takes a task until it has its result.
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t running_key_ ABSL_GUARDED_BY(mu_) = 0;
  // The latest report of the running task, whether it has yet to be sent, and when it may be.
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
    mpigate::wire::SetError(status, *hello.mutable_error());
    mpigate::wire::WriteFrame(kSocketFd, mpigate::wire::Tag::kHello, hello).IgnoreError();
    std::fprintf(stderr, "mpigate-runner: %s\n", status.ToString().c_str());
    return 1;
  }
  on_exit(ExitAtOnce, nullptr);
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
