// mpigate::Executor: submit tasks to a running mpigate service and get futures back.
//
//   absl::StatusOr<std::unique_ptr<mpigate::Executor>> executor = mpigate::Executor::Connect();
//   mpigate::Future future = (*executor)->Submit("echo", "hello");
//   absl::StatusOr<std::string> result = future.Result();   // "hello"
//
// One Executor is one session of the service, over one gRPC stream. Any number of threads may
// submit through the same Executor at once: submissions are batched onto the stream by a writer
// thread, and a reader thread completes futures as outcomes arrive.
//
// Errors are absl::Status values with canonical codes. A task that failed on its worker yields the
// worker's code and message (TaskError.exception_type, when set, is prefixed to the message as
// "type: message"); a task the service rejected yields the rejection's code (e.g. NOT_FOUND for an
// unknown function); if the connection is lost, unfinished futures yield UNAVAILABLE.
//
// Thread-safety: Executor and Future are safe to use from any number of threads.
#ifndef MPIGATE_CLIENT_EXECUTOR_H_
#define MPIGATE_CLIENT_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mpigate {

namespace internal {
struct FutureState;
class Session;
}  // namespace internal

// The eventual result of one task. Cheap to copy; copies share the same result.
class Future {
 public:
  // True once the task has ended (succeeded, failed, was cancelled or rejected).
  bool Done() const;

  // Waits until the task ends or `timeout` passes; true if it ended.
  bool Wait(absl::Duration timeout = absl::InfiniteDuration()) const;

  // Waits until the task ends, then returns its result or error. If `timeout` passes first,
  // returns DEADLINE_EXCEEDED with a message saying the wait timed out (the task goes on).
  absl::StatusOr<std::string> Result(absl::Duration timeout = absl::InfiniteDuration()) const;

  // The task's id within its session.
  uint64_t task_id() const;

 private:
  friend class internal::Session;
  explicit Future(std::shared_ptr<internal::FutureState> state) : state_(std::move(state)) {}
  std::shared_ptr<internal::FutureState> state_;
};

struct ExecutorOptions {
  // gRPC target such as "unix:/tmp/mpigate-0/gateway.sock" or "node12:50051". Empty: from
  // $MPIGATE_ENDPOINT, else the endpoint file (see common/endpoint.h).
  std::string endpoint;
  // A label for the session in the service's status output.
  std::string client_name;
  // How long Connect() waits for the service to answer.
  absl::Duration connect_timeout = absl::Seconds(10);
  // The largest message this client sends or accepts; must not exceed the server's limit.
  int max_message_bytes = 512 << 20;
};

class Executor {
 public:
  // Connects to the service and opens a session. UNAVAILABLE if the service does not answer
  // within the connect timeout; NOT_FOUND if no endpoint is known.
  static absl::StatusOr<std::unique_ptr<Executor>> Connect(ExecutorOptions options = {});

  // Shuts the session down (waiting for its tasks) and closes the connection.
  ~Executor();

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Submits `function(payload)` and returns its future at once. Never blocks on the network. After
  // Shutdown() the future fails with FAILED_PRECONDITION.
  Future Submit(absl::string_view function, std::string payload);

  // Stops accepting submissions; if `cancel_futures`, cancels the tasks that have not started
  // (their futures yield CANCELLED); if `wait`, blocks until every submitted task has ended. Safe
  // to call more than once.
  void Shutdown(bool wait = true, bool cancel_futures = false);

  // The number of workers in the pool, as the service reported when the session opened.
  int workers() const;

 private:
  explicit Executor(std::unique_ptr<internal::Session> session);
  std::unique_ptr<internal::Session> session_;
};

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_EXECUTOR_H_
