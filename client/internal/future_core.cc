#include "client/internal/future_core.h"

#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/session.h"
#include "common/shared_memory.h"

namespace mpigate::internal {

Future FutureCore::Failed(uint64_t task_id, absl::Status status) {
  auto core = std::make_shared<FutureCore>(task_id, std::weak_ptr<Session>());
  Complete(core, Ending{FutureState::kFinished, std::move(status), {}});
  return FutureAccess::Make(std::move(core));
}

void FutureCore::MarkRunning() {
  absl::MutexLock lock(&mu_);
  if (state_ == FutureState::kPending) state_ = FutureState::kRunning;
}

bool FutureCore::Complete(const std::shared_ptr<FutureCore>& core, Ending ending) {
  std::vector<Callback> callbacks;
  {
    absl::MutexLock lock(&core->mu_);
    if (core->DoneLocked()) return false;
    core->state_ = ending.state;
    core->result_ = std::move(ending.result);
    core->attempts_ = ending.attempts;
    if (ending.shared_result.has_value() || !ending.items.empty()) {
      Extras& extras = core->ExtrasLocked();
      extras.shared_result = std::move(ending.shared_result);
      extras.items = std::move(ending.items);
    }
    if (core->extras_ != nullptr) {
      callbacks.swap(core->extras_->callbacks);
      core->extras_->progress_callbacks.clear();
    }
  }
  if (!callbacks.empty()) {
    const Future future = FutureAccess::Make(core);
    for (Callback& callback : callbacks) callback(future);
  }
  return true;
}

void FutureCore::AddDoneCallback(const std::shared_ptr<FutureCore>& core, Callback callback) {
  {
    absl::MutexLock lock(&core->mu_);
    if (!core->DoneLocked()) {
      core->ExtrasLocked().callbacks.push_back(std::move(callback));
      return;
    }
  }
  callback(FutureAccess::Make(core));
}

void FutureCore::ReportProgress(const std::shared_ptr<FutureCore>& core,
                                const TaskProgress& progress) {
  std::vector<std::shared_ptr<ProgressCallback>> callbacks;
  {
    absl::MutexLock lock(&core->mu_);
    if (core->DoneLocked()) return;
    Extras& extras = core->ExtrasLocked();
    extras.progress = progress;
    callbacks = extras.progress_callbacks;
  }
  if (callbacks.empty()) return;
  const Future future = FutureAccess::Make(core);
  for (const std::shared_ptr<ProgressCallback>& callback : callbacks) (*callback)(future, progress);
}

void FutureCore::AddProgressCallback(ProgressCallback callback) {
  absl::MutexLock lock(&mu_);
  // A done future reports no more progress: keeping the callback would only hold what it captured.
  if (DoneLocked()) return;
  ExtrasLocked().progress_callbacks.push_back(
      std::make_shared<ProgressCallback>(std::move(callback)));
}

std::optional<TaskProgress> FutureCore::progress() const {
  absl::MutexLock lock(&mu_);
  if (extras_ == nullptr) return std::nullopt;
  return extras_->progress;
}

FutureState FutureCore::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

bool FutureCore::Failed() const {
  absl::MutexLock lock(&mu_);
  return state_ == FutureState::kFinished && !result_.ok();
}

FutureCore::Extras& FutureCore::ExtrasLocked() {
  if (extras_ == nullptr) extras_ = std::make_unique<Extras>();
  return *extras_;
}

uint32_t FutureCore::attempts() const {
  absl::MutexLock lock(&mu_);
  return attempts_;
}

bool FutureCore::RequestCancel(CancelMode mode) {
  {
    absl::MutexLock lock(&mu_);
    // Known answers need no round trip: only the service knows whether a pending task started,
    // and whether a running one has ended.
    if (state_ == FutureState::kCancelled) return true;
    if (state_ == FutureState::kFinished) return false;
    if (state_ == FutureState::kRunning && mode == CancelMode::kPendingOnly) return false;
  }
  // No session: the executor is gone, and took every unfinished future with it (it waits for
  // them), so this one has ended by now.
  size_t interrupted = 0;
  if (std::shared_ptr<Session> session = session_.lock()) {
    interrupted = session->Cancel({task_id_}, /*wait=*/true, mode);
  }
  return interrupted > 0 || state() == FutureState::kCancelled;
}

bool FutureCore::Await(absl::Time deadline, bool started) const {
  absl::MutexLock lock(&mu_);
  const absl::Condition condition = started ? absl::Condition(this, &FutureCore::StartedLocked)
                                            : absl::Condition(this, &FutureCore::DoneLocked);
  return mu_.AwaitWithDeadline(condition, deadline);
}

absl::Status FutureCore::AwaitDoneLocked(absl::Duration timeout) const {
  // absl::Now() + InfiniteDuration() is InfiniteFuture(): no special case for "no timeout".
  if (mu_.AwaitWithDeadline(absl::Condition(this, &FutureCore::DoneLocked),
                            absl::Now() + timeout)) {
    return absl::OkStatus();
  }
  // The message names the wait, not the task, so callers can tell it from a task that itself
  // ended with DEADLINE_EXCEEDED (e.g. its queue timeout).
  return absl::DeadlineExceededError(absl::StrCat("timed out after ", absl::FormatDuration(timeout),
                                                  " waiting for task ", task_id_));
}

absl::StatusOr<std::string> FutureCore::Result(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  if (absl::Status waited = AwaitDoneLocked(timeout); !waited.ok()) return waited;
  // A copy: every copy of this Future may ask for the result, any number of times.
  if (!result_.ok()) return result_.status();
  if (extras_ != nullptr && extras_->shared_result.has_value()) {
    return LargeCopy(extras_->shared_result->bytes());
  }
  return LargeCopy(*result_);
}

absl::Status FutureCore::Exception(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  if (absl::Status waited = AwaitDoneLocked(timeout); !waited.ok()) return waited;
  return result_.status();
}

std::vector<absl::StatusOr<std::string>> FutureCore::TakeItems() {
  absl::MutexLock lock(&mu_);
  if (extras_ == nullptr) return {};
  return std::move(extras_->items);
}

std::vector<absl::StatusOr<std::string>> FutureCore::Items() const {
  absl::MutexLock lock(&mu_);
  if (extras_ == nullptr) return {};
  return extras_->items;
}

}  // namespace mpigate::internal
