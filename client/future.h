// mpigate::Future: the eventual outcome of one task, as concurrent.futures.Future.
//
//   mpigate::Future future = executor->Submit("echo", "hello");
//   future.AddDoneCallback([](const mpigate::Future& f) { ... });   // runs exactly once
//   absl::StatusOr<std::string> result = future.Result(absl::Seconds(5));
//
// A future is PENDING until a worker takes its task, then RUNNING, and ends FINISHED (with a
// result or an error) or CANCELLED. Only a PENDING future can be cancelled; beyond
// concurrent.futures, Interrupt() also asks a RUNNING task's function to give up, and a running
// task may report its progress (progress(), AddProgressCallback()).
//
// Errors are absl::Status values with canonical codes. A task that failed on its worker yields the
// worker's code and message (TaskError.exception_type, when set, is prefixed to the message as
// "type: message"); a task the service rejected yields the rejection's code (e.g. NOT_FOUND for an
// unknown function, FAILED_PRECONDITION after shutdown or with a broken pool); a cancelled task
// yields CANCELLED; if the connection is lost, unfinished futures yield UNAVAILABLE.
//
// Thread-safety: cheap to copy; copies share one state; every method may be called from any
// thread. Futures may outlive their Executor (which waits for them when destroyed).
#ifndef MPIGATE_CLIENT_FUTURE_H_
#define MPIGATE_CLIENT_FUTURE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mpigate {

namespace internal {
class FutureCore;
struct FutureAccess;
}  // namespace internal

// concurrent.futures' states. CANCELLED and FINISHED are final.
enum class FutureState {
  kPending,    // Submitted; no worker has taken it yet. Cancel() can still stop it.
  kRunning,    // A worker is running it.
  kCancelled,  // Cancelled before it ran, or interrupted and given up; Result() yields CANCELLED.
  kFinished,   // Ended with a result or an error (including rejections and a lost connection).
};

// How far a running task says it has got (TaskContext::ReportProgress on the worker).
struct TaskProgress {
  // From 0 to 1, as the task's function reported it.
  double fraction = 0;
  // The function's words, e.g. "trajectory 300 of 1000"; may be empty.
  std::string message;
};

class Future {
 public:
  FutureState state() const;
  // FINISHED or CANCELLED.
  bool Done() const;
  bool Running() const;
  bool Cancelled() const;

  // Cancels the task if it has not started, as concurrent.futures.Future.cancel(): true if the
  // future is (now or already) CANCELLED, false if it is running or finished. While the future is
  // pending this asks the service and blocks for its answer (one round trip); otherwise it answers
  // at once. From a done callback (the executor's reader thread) it cannot wait: it sends the
  // request and returns false unless the future is already cancelled.
  bool Cancel();

  // Beyond concurrent.futures, which cannot touch a running task: cancels the task if it is still
  // pending, as Cancel() does, and if it is running asks the service to set its cancellation flag
  // (TaskContext::cancelled() on the worker), in the same one round trip. True if the task is
  // (now or already) CANCELLED or its worker was told to interrupt it; false if it had already
  // finished. An interrupted task runs on until its function returns: if that is a CANCELLED
  // error the future ends CANCELLED, otherwise as the function says; Wait() for it. Functions
  // that never poll their flag are not stopped. From a done or progress callback (the executor's
  // reader thread) it cannot wait: it sends the request and returns false unless the future is
  // already cancelled.
  bool Interrupt();

  // Beyond Interrupt(): cancels the task if it is still pending, and if it is running has the
  // service kill it (its task runner process is killed and replaced), in the same one round trip;
  // the future then ends CANCELLED whatever the function was doing. True if the task is (now or
  // already) CANCELLED or was told to die; false if it had already finished. A function that runs
  // inside the worker process (a pool started with --isolation=none, or a gang function) cannot
  // be killed: for those this is Interrupt(). The same reader-thread caveat as Interrupt().
  bool Kill();

  // Waits until the future is done or `timeout` passes; true if it is done.
  bool Wait(absl::Duration timeout = absl::InfiniteDuration()) const;

  // Waits until the task has started (or ended) or `timeout` passes; true if it has. Not in
  // concurrent.futures; it lets a caller know a task is RUNNING without polling.
  bool WaitStarted(absl::Duration timeout = absl::InfiniteDuration()) const;

  // Waits until the future is done, then returns its result or error. If `timeout` passes first,
  // returns DEADLINE_EXCEEDED with a message saying the wait timed out (the task goes on).
  absl::StatusOr<std::string> Result(absl::Duration timeout = absl::InfiniteDuration()) const;

  // As concurrent.futures.Future.exception(): waits as Result() does and returns the task's error,
  // OK if it succeeded, CANCELLED if it was cancelled, DEADLINE_EXCEEDED if the wait timed out.
  absl::Status Exception(absl::Duration timeout = absl::InfiniteDuration()) const;

  // Calls `callback(future)` exactly once, when the future is done: at once on the calling thread
  // if it already is, else on the thread that completes it (usually the executor's reader thread,
  // which delivers every other outcome of the session). Callbacks must therefore be quick and must
  // not block: no Result() of an unfinished future, no Shutdown(wait=true). Callbacks added to one
  // future run in the order they were added.
  void AddDoneCallback(absl::AnyInvocable<void(const Future&)> callback) const;

  // The task's latest progress report, or nullopt if it has reported none (yet). Reports arrive
  // at most every 20 ms per task; the last one before the task ended stays.
  std::optional<TaskProgress> progress() const;

  // Calls `callback(future, progress)` for each progress report received after this call, on the
  // executor's reader thread (so, as done callbacks, it must be quick and must not block), and
  // never once the future is done; a callback added to a done future is never called. Callbacks
  // of one future run in the order they were added.
  void AddProgressCallback(
      absl::AnyInvocable<void(const Future&, const TaskProgress&)> callback) const;

  // The task's id within its session (0 for a future that failed before it was submitted).
  uint64_t task_id() const;

  // Once done: how many times the task was started, 1 unless it was run again after crashes
  // (SubmitOptions::max_retries); 0 if it never ran, and while it is not done.
  uint32_t attempts() const;

  // Copies of one future are equal; futures of different submissions are not.
  friend bool operator==(const Future& a, const Future& b) { return a.core_ == b.core_; }
  friend bool operator!=(const Future& a, const Future& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const Future& future) {
    return H::combine(std::move(h), future.core_.get());
  }

 private:
  friend struct internal::FutureAccess;
  explicit Future(std::shared_ptr<internal::FutureCore> core) : core_(std::move(core)) {}
  std::shared_ptr<internal::FutureCore> core_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_FUTURE_H_
