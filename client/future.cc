#include "client/future.h"

#include <utility>

#include "absl/time/clock.h"
#include "client/internal/future_core.h"

namespace mpigate {

FutureState Future::state() const { return core_->state(); }

bool Future::Done() const {
  const FutureState state = core_->state();
  return state == FutureState::kFinished || state == FutureState::kCancelled;
}

bool Future::Running() const { return core_->state() == FutureState::kRunning; }

bool Future::Cancelled() const { return core_->state() == FutureState::kCancelled; }

bool Future::Cancel() { return core_->Cancel(); }

bool Future::Interrupt() { return core_->Interrupt(); }

bool Future::Kill() { return core_->Kill(); }

uint32_t Future::attempts() const { return core_->attempts(); }

bool Future::Wait(absl::Duration timeout) const {
  return core_->Await(absl::Now() + timeout, /*started=*/false);
}

bool Future::WaitStarted(absl::Duration timeout) const {
  return core_->Await(absl::Now() + timeout, /*started=*/true);
}

absl::StatusOr<std::string> Future::Result(absl::Duration timeout) const {
  return core_->Result(timeout);
}

absl::Status Future::Exception(absl::Duration timeout) const { return core_->Exception(timeout); }

void Future::AddDoneCallback(absl::AnyInvocable<void(const Future&)> callback) const {
  internal::FutureCore::AddDoneCallback(core_, std::move(callback));
}

std::optional<TaskProgress> Future::progress() const { return core_->progress(); }

void Future::AddProgressCallback(
    absl::AnyInvocable<void(const Future&, const TaskProgress&)> callback) const {
  core_->AddProgressCallback(std::move(callback));
}

uint64_t Future::task_id() const { return core_->task_id(); }

}  // namespace mpigate
