// SessionOpener: the call of a session, opened or resumed. It starts a Session call on the
// gateway, sends `open` and waits for `opened`; resuming, it tries again what may pass (the
// service unreachable, or not yet aware that the old stream is gone) with backoff.
//
// A service that accepts the connection but never answers `open` must not hang the client: a
// watchdog thread per attempt cancels the call at its deadline (a deadline on the call would bound
// the whole session, not the handshake).
//
// Threads: Open() and Resume() are called by one thread at a time (the session's opener before
// its threads start, then its reader thread); Stop() and stopped() from any thread.
#ifndef MPIGATE_CLIENT_INTERNAL_SESSION_OPENER_H_
#define MPIGATE_CLIENT_INTERNAL_SESSION_OPENER_H_

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/internal/session_stream.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

class SessionOpener {
 public:
  // A call whose `opened` has arrived.
  struct OpenCall {
    std::unique_ptr<SessionStream> stream;
    v1::SessionOpened opened;
  };

  // `gateway` must outlive this.
  explicit SessionOpener(GatewayConnection& gateway) : gateway_(gateway) {}

  SessionOpener(const SessionOpener&) = delete;
  SessionOpener& operator=(const SessionOpener&) = delete;

  // One attempt: `open` on a new call, `opened` by `deadline` (else UNAVAILABLE). With
  // `wait_for_ready`, the call waits for the channel to (re)connect within that time. The call's
  // own error if it ends first; INTERNAL if the service answers with another event or ends the
  // call cleanly.
  absl::StatusOr<OpenCall> Open(const v1::SessionRequest& open, absl::Time deadline,
                                bool wait_for_ready);

  // Attempts of `open` (which carries the resume token), each within `attempt_timeout`, with
  // backoff between them, until one succeeds, one fails for good, Stop() is called or `deadline`
  // would pass; then the last attempt's error.
  absl::StatusOr<OpenCall> Resume(const v1::SessionRequest& open, absl::Time deadline,
                                  absl::Duration attempt_timeout);

  // No more attempts after the current one; cuts a backoff wait short. Final.
  void Stop();
  bool stopped() const;

 private:
  GatewayConnection& gateway_;

  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SESSION_OPENER_H_
