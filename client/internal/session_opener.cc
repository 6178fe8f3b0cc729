#include "client/internal/session_opener.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace mpigate::internal {
namespace {

// The first retry of a resume after this long, doubling up to kMaxResumeBackoff.
constexpr absl::Duration kFirstResumeBackoff = absl::Milliseconds(20);
constexpr absl::Duration kMaxResumeBackoff = absl::Seconds(1);

// Opening a call to resume the session failed with `status`: whether a later attempt may succeed
// (the service unreachable or restarting its listener, or still holding the old stream).
bool MayResumeLater(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsFailedPrecondition(status) ||
         absl::IsDeadlineExceeded(status) || absl::IsCancelled(status);
}

}  // namespace

absl::StatusOr<SessionOpener::OpenCall> SessionOpener::Open(const v1::SessionRequest& open,
                                                            absl::Time deadline,
                                                            bool wait_for_ready) {
  OpenCall call;
  call.stream = gateway_.StartSession(wait_for_ready);
  SessionStream& stream = *call.stream;

  absl::Notification answered;
  std::atomic<bool> timed_out{false};
  std::thread watchdog([&] {
    if (!answered.WaitForNotificationWithDeadline(deadline)) {
      timed_out.store(true);
      stream.Cancel();
    }
  });
  v1::SessionEvent event;
  // A failed Write means the call already ended; Read then fails too and Finish says why.
  const bool read = stream.Write(open) && stream.Read(&event);
  answered.Notify();
  watchdog.join();

  const std::string& target = gateway_.target();
  if (timed_out.load()) {
    stream.Finish().IgnoreError();  // CANCELLED at once: we cancelled the call.
    return absl::UnavailableError(absl::StrCat("the mpigate service at ", target,
                                               " did not answer `open` in time; is it running?"));
  }
  if (!read) {
    absl::Status status = stream.Finish();
    if (status.ok()) {
      return absl::InternalError(
          absl::StrCat("the mpigate service at ", target, " ended the session before opening it"));
    }
    return status;
  }
  if (event.event_case() != v1::SessionEvent::kOpened) {
    stream.Cancel();
    stream.Finish().IgnoreError();
    return absl::InternalError(
        absl::StrCat("the mpigate service at ", target, " answered `open` with event ",
                     static_cast<int>(event.event_case()), " instead of `opened`"));
  }
  call.opened = std::move(*event.mutable_opened());
  return call;
}

absl::StatusOr<SessionOpener::OpenCall> SessionOpener::Resume(const v1::SessionRequest& open,
                                                              absl::Time deadline,
                                                              absl::Duration attempt_timeout) {
  absl::Duration backoff = kFirstResumeBackoff;
  for (;;) {
    absl::StatusOr<OpenCall> call = Open(open, std::min(deadline, absl::Now() + attempt_timeout),
                                         /*wait_for_ready=*/true);
    if (call.ok()) return call;
    absl::MutexLock lock(&mu_);
    if (!MayResumeLater(call.status()) || stopped_ || absl::Now() + backoff >= deadline) {
      return call.status();
    }
    mu_.AwaitWithTimeout(absl::Condition(&stopped_), backoff);
    backoff = std::min(2 * backoff, kMaxResumeBackoff);
  }
}

void SessionOpener::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

bool SessionOpener::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}

}  // namespace mpigate::internal
