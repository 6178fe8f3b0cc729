// FutureCore: the state every copy of one mpigate::Future shares, and the only code that changes
// it. The session's reader thread moves it from PENDING to RUNNING, records its progress and
// completes it; user threads read it, wait on it and add callbacks.
//
// Thread-safety: every method may be called from any thread. Callbacks run outside `mu_`, so a
// callback may use any future, including this one.
#ifndef MPIGATE_CLIENT_INTERNAL_FUTURE_CORE_H_
#define MPIGATE_CLIENT_INTERNAL_FUTURE_CORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/future.h"
#include "common/shared_memory.h"

namespace mpigate::internal {

class Session;

// What a cancel request does to tasks that are already running (CancelTasks.interrupt_running and
// .force).
enum class CancelMode {
  kPendingOnly,  // Nothing: only tasks still pending are cancelled (Future::Cancel).
  kInterrupt,    // Set their cancellation flag (Future::Interrupt).
  kKill,         // Kill the process running them (Future::Kill).
};

// How a task ended. `items` holds one result per item of a chunk or range task (see
// Session::SubmitChunk and SubmitRange) or per worker of a broadcast, and is empty otherwise.
struct Ending {
  FutureState state = FutureState::kFinished;
  absl::StatusOr<std::string> result;
  // A successful result still in its shared memory object, mapped (`result` is then empty): each
  // Result() copies it out once, rather than a copy into `result` and another per Result().
  std::optional<SharedMapping> shared_result;
  std::vector<absl::StatusOr<std::string>> items;
  // TaskOutcome.attempts: how many times the task was started.
  uint32_t attempts = 0;
};

class FutureCore {
 public:
  using Callback = absl::AnyInvocable<void(const Future&)>;
  using ProgressCallback = absl::AnyInvocable<void(const Future&, const TaskProgress&)>;

  // `session` is where Cancel() sends its request; it may be gone by then.
  FutureCore(uint64_t task_id, std::weak_ptr<Session> session)
      : task_id_(task_id), session_(std::move(session)) {}

  // A future that ended before it could be submitted, e.g. a submit after shutdown.
  static Future Failed(uint64_t task_id, absl::Status status);

  // PENDING -> RUNNING; no effect in any other state.
  void MarkRunning();

  // Ends the future with `ending` (whose state must be CANCELLED or FINISHED), wakes its waiters,
  // then runs its done callbacks on this thread. False, and no effect, if it had already ended.
  static bool Complete(const std::shared_ptr<FutureCore>& core, Ending ending);

  static void AddDoneCallback(const std::shared_ptr<FutureCore>& core, Callback callback);

  // Records `progress` and runs the progress callbacks on this thread, unless the future is done.
  // Only the session's reader thread calls this, and it is also the thread that completes the
  // future, so no progress callback can run once the future is done.
  static void ReportProgress(const std::shared_ptr<FutureCore>& core, const TaskProgress& progress);
  void AddProgressCallback(ProgressCallback callback);
  std::optional<TaskProgress> progress() const;

  FutureState state() const;
  // FINISHED with an error: concurrent.futures' "raised an exception" (cancelled is not).
  bool Failed() const;
  // Future::Cancel(), Interrupt() and Kill(): the same request, doing what `mode` says to the task
  // if it is running.
  bool Cancel() { return RequestCancel(CancelMode::kPendingOnly); }
  bool Interrupt() { return RequestCancel(CancelMode::kInterrupt); }
  bool Kill() { return RequestCancel(CancelMode::kKill); }
  // Waits until the state is one of the final ones (`started`: or RUNNING) or `deadline` passes.
  bool Await(absl::Time deadline, bool started) const;
  // Wait until done; then the result (or just its status), or DEADLINE_EXCEEDED naming `timeout`.
  absl::StatusOr<std::string> Result(absl::Duration timeout) const;
  absl::Status Exception(absl::Duration timeout) const;
  // The per-item results of a finished chunk task, moved out: only its one reader may call this.
  std::vector<absl::StatusOr<std::string>> TakeItems();
  // A copy of them, for a future that many copies may read (a broadcast's, one item per worker).
  std::vector<absl::StatusOr<std::string>> Items() const;

  uint64_t task_id() const { return task_id_; }
  uint32_t attempts() const;
  const std::weak_ptr<Session>& session() const { return session_; }

 private:
  bool DoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return state_ == FutureState::kFinished || state_ == FutureState::kCancelled;
  }
  absl::Status AwaitDoneLocked(absl::Duration timeout) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StartedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return state_ != FutureState::kPending;
  }
  bool RequestCancel(CancelMode mode);

  // What most futures never have: a result left in shared memory, per-item results, done and
  // progress callbacks, progress. Apart, and made on first use, so that the common future stays
  // small: a submit loop makes one per task, and their memory is most of a client's.
  struct Extras {
    std::optional<SharedMapping> shared_result;
    std::vector<absl::StatusOr<std::string>> items;
    // Run, and cleared, when the future ends.
    std::vector<Callback> callbacks;
    std::optional<TaskProgress> progress;
    // Run on every report until the future ends, then cleared. Shared so that a report can run
    // them outside mu_ while another thread adds one.
    std::vector<std::shared_ptr<ProgressCallback>> progress_callbacks;
  };
  Extras& ExtrasLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t task_id_;
  const std::weak_ptr<Session> session_;

  mutable absl::Mutex mu_;
  FutureState state_ ABSL_GUARDED_BY(mu_) = FutureState::kPending;
  // Read only once done. Not given a message: one would be allocated for every task.
  absl::StatusOr<std::string> result_ ABSL_GUARDED_BY(mu_);
  uint32_t attempts_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<Extras> extras_ ABSL_GUARDED_BY(mu_);
};

// How the library's own code reaches a Future's core, without making it part of the public API.
struct FutureAccess {
  static const std::shared_ptr<FutureCore>& Core(const Future& future) { return future.core_; }
  static Future Make(std::shared_ptr<FutureCore> core) { return Future(std::move(core)); }
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_FUTURE_CORE_H_
