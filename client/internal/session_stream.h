// The client's view of the gateway: SessionStream is one call of Gateway.Session, the
// bidirectional stream a session speaks over; GatewayConnection starts such calls and makes the
// unary ones. The gRPC implementation is grpc_gateway.h; tests drive a Session through a fake.
//
// Threads: one thread writes a stream and one reads it (they may differ); Cancel() may be called
// from any thread; Finish() once, by the reader, after Read() failed and no Write() is in flight.
#ifndef MPIGATE_CLIENT_INTERNAL_SESSION_STREAM_H_
#define MPIGATE_CLIENT_INTERNAL_SESSION_STREAM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::internal {

class SessionStream {
 public:
  virtual ~SessionStream() = default;

  // Sends `request`. False once the call is over (Read() then fails too, and Finish() says why).
  virtual bool Write(const v1::SessionRequest& request) = 0;
  // Waits for the next event. False once the call is over, cleanly or not.
  virtual bool Read(v1::SessionEvent* event) = 0;
  // Ends the call from this side: pending and later Reads and Writes fail, Finish() is CANCELLED.
  virtual void Cancel() = 0;
  // How the call ended: OK when the service ended it, else the call's error.
  virtual absl::Status Finish() = 0;
};

class GatewayConnection {
 public:
  virtual ~GatewayConnection() = default;

  // Starts a Session call. With `wait_for_ready`, the call waits for the connection to be
  // (re)established rather than failing at once while it is down. Any thread.
  virtual std::unique_ptr<SessionStream> StartSession(bool wait_for_ready) = 0;
  // Gateway.ListFunctions, within `timeout`. Any thread.
  virtual absl::StatusOr<std::vector<FunctionInfo>> ListFunctions(absl::Duration timeout) = 0;
  // The service's address, for error messages.
  virtual const std::string& target() const = 0;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_SESSION_STREAM_H_
