// GrpcGateway: the GatewayConnection of a real service, over one gRPC channel. Every call carries
// the connection's bearer token (common/access.h).
//
// Thread-safety: all methods may be called from any thread; see session_stream.h for a stream's.
#ifndef MPIGATE_CLIENT_INTERNAL_GRPC_GATEWAY_H_
#define MPIGATE_CLIENT_INTERNAL_GRPC_GATEWAY_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/internal/session_stream.h"
#include "common/access.h"
#include "mpigate/v1/gateway.grpc.pb.h"

namespace mpigate::internal {

class GrpcGateway final : public GatewayConnection {
 public:
  // Makes the channel to `connection` (messages up to `max_message_bytes` both ways) and waits
  // until it is connected; UNAVAILABLE if that takes longer than `connect_timeout`.
  static absl::StatusOr<std::unique_ptr<GrpcGateway>> Connect(const Connection& connection,
                                                              int max_message_bytes,
                                                              absl::Duration connect_timeout);

  std::unique_ptr<SessionStream> StartSession(bool wait_for_ready) override;
  absl::StatusOr<std::vector<FunctionInfo>> ListFunctions(absl::Duration timeout) override;
  const std::string& target() const override { return target_; }

 private:
  GrpcGateway(std::string target, std::string token, std::shared_ptr<grpc::Channel> channel);

  const std::string target_;
  // The bearer token; empty: none.
  const std::string token_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Gateway::Stub> stub_;
};

}  // namespace mpigate::internal

#endif  // MPIGATE_CLIENT_INTERNAL_GRPC_GATEWAY_H_
