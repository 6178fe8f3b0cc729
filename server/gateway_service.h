// GatewayService: the gRPC face of the gateway (service mpigate.v1.Gateway).
//
// A thin adapter: it validates and converts requests, hands them to the Scheduler, and streams
// the Scheduler's outcomes back (server/session_reactor.h). It never blocks in a reaction and
// never calls MPI. The thread that completes tasks (the MPI thread) only tells a session's
// listener; the service's StreamPump thread collects the outcomes and starts the writes.
//
// With a token, nothing a caller sends is read before the caller is authenticated: gRPC reads a
// unary method's whole request before any handler (or interceptor) sees the call, so those
// methods are served as bytes from a generic service (RegisterWith), whose reactor checks the
// call's metadata before it asks for the request. An unauthenticated call, however large its
// request, ends UNAUTHENTICATED with at most the transport's flow-control window of it received.
// Session checks its metadata before its first read as well, and takes its messages as bytes, so
// that one that does not parse fails the stream with INVALID_ARGUMENT instead of looking like a
// half-close.
//
// Thread-safety: gRPC calls it from its own threads; the Scheduler must outlive the gRPC server.
#ifndef MPIGATE_SERVER_GATEWAY_SERVICE_H_
#define MPIGATE_SERVER_GATEWAY_SERVICE_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/log.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "server/scheduler.h"
#include "server/stream_pump.h"

namespace mpigate::server {

// What a unary method does with its request (defined in the .cc file).
class UnaryHandler;

// The generated service with Session's messages as bytes, parsed by the service itself, and the
// unary methods left to the generic service. Session keeps the service registered by name, so
// that reflection still lists it.
using GatewayServiceBase =
    v1::Gateway::WithRawCallbackMethod_Session<v1::Gateway::WithGenericMethod_Run<
        v1::Gateway::WithGenericMethod_GetPoolStatus<v1::Gateway::WithGenericMethod_ListFunctions<
            v1::Gateway::WithGenericMethod_StopService<v1::Gateway::Service>>>>>;

class GatewayService final : public GatewayServiceBase {
 public:
  // `stop_service` starts the service's drain (StopService); it must not block.
  // `shared_memory_domain` is the gateway's (common/shared_memory.h): sessions whose client
  // names the same one may use shared memory, if the scheduler offers it.
  // `token`, if not empty, is the bearer token every call must carry (common/access.h): a call
  // without it, or with another, fails with UNAUTHENTICATED before any of its request is read.
  // Refusals are logged, at most 10 every 10 s (a LogThrottle).
  GatewayService(Scheduler& scheduler, std::function<void(std::string reason)> stop_service,
                 std::string shared_memory_domain = "", std::string token = "");
  ~GatewayService() override;

  // Registers the service with `builder`: the Session stream, and the generic service that serves
  // the unary methods (and answers UNIMPLEMENTED to any method no service has). gRPC allows one
  // generic service per server: `builder` must not be given another.
  void RegisterWith(grpc::ServerBuilder& builder);

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Session(
      grpc::CallbackServerContext* context) override;

 private:
  // Serves the unary methods, by their full names ("/mpigate.v1.Gateway/Run").
  class UnaryMethods final : public grpc::CallbackGenericService {
   public:
    explicit UnaryMethods(GatewayService& service) : service_(service) {}
    grpc::ServerGenericBidiReactor* CreateReactor(
        grpc::GenericCallbackServerContext* context) override;

   private:
    GatewayService& service_;
  };

  // Makes the handler of one call of a unary method.
  using UnaryHandlerFactory = std::function<std::unique_ptr<UnaryHandler>()>;

  // OK if no token is required or the call carries it; UNAUTHENTICATED otherwise.
  grpc::Status Authenticate(const grpc::CallbackServerContext& context);

  Scheduler& scheduler_;
  // Declared first, destroyed last: the calls below post to it until they are done.
  StreamPump pump_;
  const std::function<void(std::string reason)> stop_service_;
  const std::string shared_memory_domain_;
  const std::string token_;
  // The unary methods by full name; constant after construction.
  std::map<std::string, UnaryHandlerFactory, std::less<>> unary_methods_;
  UnaryMethods generic_service_{*this};
  LogThrottle refusals_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_GATEWAY_SERVICE_H_
