// FakeGateway: an in-process GatewayConnection (client/internal/session_stream.h) whose Session
// calls the test drives, so that the C++ client's Session can be tested without a server, as
// tests/python/fake_gateway.py does for the Python client.
//
//   auto gateway = std::make_unique<FakeGateway>();
//   FakeGateway& fake = *gateway;
//   auto session = Session::Open(options, std::move(gateway));
//   Future future = (*session)->Submit("echo", "x", {});
//   std::vector<v1::SessionRequest> submits = fake.AwaitRequests(v1::SessionRequest::kSubmit, 1);
//   fake.Send(...);                           // events for the current call, in order
//   fake.End(absl::OkStatus());               // the service ends the call
//
// Each call answers `open` by itself as `on_open` says (default: Opened()); it sends nothing else
// unless the test says so: Send() queues events on the current call, End() ends it once the events
// queued before are read, Break() ends it at once (writes fail from then on). A client that resumes
// starts a new call, which becomes the current one.
//
// Thread-safety: all methods may be called from any thread.
#ifndef MPIGATE_TESTS_FAKE_GATEWAY_H_
#define MPIGATE_TESTS_FAKE_GATEWAY_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/internal/session_stream.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::testing {

// An `opened` event for session 1 of a READY pool of 2 workers; `resume_token` and
// `resume_grace_ms` make it resumable.
v1::SessionEvent Opened(const std::string& resume_token = "", uint64_t resume_grace_ms = 0);

class FakeGateway final : public internal::GatewayConnection {
 public:
  // The answer to an `open`: an event (`opened`, or another for a service that breaks the
  // protocol), no answer at all (nullopt), or the call ended with an error.
  using OnOpenResult = absl::StatusOr<std::optional<v1::SessionEvent>>;
  using OnOpen = std::function<OnOpenResult(const v1::OpenSession&)>;

  explicit FakeGateway(OnOpen on_open = nullptr);
  ~FakeGateway() override;

  // Queues `event` on the current call.
  void Send(v1::SessionEvent event);
  // Ends the current call with `status` once the events queued before it are read.
  void End(absl::Status status);
  // Ends the current call with `status` at once: reads and writes fail from now on.
  void Break(absl::Status status);
  // Makes the current call's next write fail and end the call with UNAVAILABLE, as a stream that
  // breaks while the client writes.
  void BreakOnNextWrite();

  // Waits until `count` requests of `kind` arrived (on any call) and returns them all; fewer if
  // they do not come within 30 s, for the test's assertion to report.
  std::vector<v1::SessionRequest> AwaitRequests(v1::SessionRequest::RequestCase kind, size_t count);
  // Waits until the `submit` requests (on any call) carry `count` task specs in all, however
  // many messages carried them (a submit that finds the writer idle goes alone); returns the
  // `submit` requests, fewer if they do not come within 30 s.
  std::vector<v1::SessionRequest> AwaitTasks(size_t count);
  // The requests of `kind` so far.
  std::vector<v1::SessionRequest> Requests(v1::SessionRequest::RequestCase kind) const;
  // The threads that wrote them, in the same order.
  std::vector<std::thread::id> WritingThreads(v1::SessionRequest::RequestCase kind) const;
  // How many calls were started.
  size_t calls() const;

  std::unique_ptr<internal::SessionStream> StartSession(bool wait_for_ready) override;
  absl::StatusOr<std::vector<FunctionInfo>> ListFunctions(absl::Duration timeout) override;
  const std::string& target() const override { return target_; }

  // One call's state, shared by its stream and the gateway.
  struct Call;

 private:
  void Record(const v1::SessionRequest& request);

  const std::string target_ = "fake:gateway";
  const OnOpen on_open_;

  mutable absl::Mutex mu_;
  std::vector<v1::SessionRequest> requests_ ABSL_GUARDED_BY(mu_);
  // The thread that wrote each of requests_.
  std::vector<std::thread::id> writing_threads_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Call> current_ ABSL_GUARDED_BY(mu_);
  size_t calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_FAKE_GATEWAY_H_
