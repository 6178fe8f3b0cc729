// GatewayService: the gRPC face of the gateway (service mpigate.v1.Gateway).
//
// A thin adapter: it validates and converts requests, hands them to the Scheduler, and streams
// the Scheduler's outcomes back. It never blocks in a reaction and never calls MPI. Outcomes are
// pushed to a session's stream by whichever thread completes them (the MPI thread), through a
// SessionListener; writes are batched, one in flight per stream.
//
// Thread-safety: gRPC calls it from its own threads; the Scheduler must outlive the gRPC server.
#ifndef MPIGATE_SERVER_GATEWAY_SERVICE_H_
#define MPIGATE_SERVER_GATEWAY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <utility>

#include "mpigate/v1/gateway.grpc.pb.h"
#include "server/scheduler.h"

namespace mpigate::server {

class GatewayService final : public v1::Gateway::CallbackService {
 public:
  // `stop_service` starts the service's drain (StopService); it must not block.
  // `shared_memory_domain` is the gateway's (common/shared_memory.h): sessions whose client
  // names the same one may use shared memory, if the scheduler offers it.
  // `token`, if not empty, is the bearer token every call must carry (common/access.h): a call
  // without it, or with another, fails with UNAUTHENTICATED before it touches the scheduler.
  GatewayService(Scheduler& scheduler, std::function<void(std::string reason)> stop_service,
                 std::string shared_memory_domain = "", std::string token = "")
      : scheduler_(scheduler),
        stop_service_(std::move(stop_service)),
        shared_memory_domain_(std::move(shared_memory_domain)),
        token_(std::move(token)) {}

  grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionEvent>* Session(
      grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, const v1::RunRequest* request,
                                v1::TaskOutcome* response) override;

  grpc::ServerUnaryReactor* GetPoolStatus(grpc::CallbackServerContext* context,
                                          const v1::GetPoolStatusRequest* request,
                                          v1::PoolStatus* response) override;

  grpc::ServerUnaryReactor* ListFunctions(grpc::CallbackServerContext* context,
                                          const v1::ListFunctionsRequest* request,
                                          v1::ListFunctionsResponse* response) override;

  grpc::ServerUnaryReactor* StopService(grpc::CallbackServerContext* context,
                                        const v1::StopServiceRequest* request,
                                        v1::StopServiceResponse* response) override;

 private:
  // OK if no token is required or the call carries it; UNAUTHENTICATED otherwise.
  grpc::Status Authenticate(const grpc::CallbackServerContext& context) const;

  Scheduler& scheduler_;
  const std::function<void(std::string reason)> stop_service_;
  const std::string shared_memory_domain_;
  const std::string token_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_GATEWAY_SERVICE_H_
