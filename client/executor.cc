#include "client/executor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/internal/session.h"

namespace mpigate {

bool Future::Done() const {
  absl::MutexLock lock(&state_->mu);
  return state_->done;
}

bool Future::Wait(absl::Duration timeout) const {
  absl::MutexLock lock(&state_->mu);
  return state_->mu.AwaitWithTimeout(absl::Condition(&state_->done), timeout);
}

absl::StatusOr<std::string> Future::Result(absl::Duration timeout) const {
  absl::MutexLock lock(&state_->mu);
  if (!state_->mu.AwaitWithTimeout(absl::Condition(&state_->done), timeout)) {
    // The message names the wait, not the task, so callers can tell it from a task that itself
    // ended with DEADLINE_EXCEEDED (e.g. its queue timeout).
    return absl::DeadlineExceededError(absl::StrCat(
        "timed out after ", absl::FormatDuration(timeout), " waiting for task ", state_->task_id));
  }
  // A copy: every copy of this Future may ask for the result, any number of times.
  return state_->result;
}

uint64_t Future::task_id() const { return state_->task_id; }

absl::StatusOr<std::unique_ptr<Executor>> Executor::Connect(ExecutorOptions options) {
  absl::StatusOr<std::unique_ptr<internal::Session>> session = internal::Session::Open(options);
  if (!session.ok()) return session.status();
  return std::unique_ptr<Executor>(new Executor(*std::move(session)));
}

Executor::Executor(std::unique_ptr<internal::Session> session) : session_(std::move(session)) {}

// Out of line: internal::Session is incomplete in the header.
Executor::~Executor() = default;

Future Executor::Submit(absl::string_view function, std::string payload) {
  return session_->Submit(function, std::move(payload));
}

void Executor::Shutdown(bool wait, bool cancel_futures) {
  session_->Shutdown(wait, cancel_futures);
}

int Executor::workers() const { return session_->workers(); }

}  // namespace mpigate
