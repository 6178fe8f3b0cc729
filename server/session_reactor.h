// The Session stream of the Gateway service: opens or resumes a session, hands its requests to
// the Scheduler, and writes the session's events back, batched, one write in flight.
//
// Every outcome it writes goes back to the scheduler (Retain) once written or dropped unwritten,
// so that the session keeps it until the client acknowledges it. A stream that ends without
// `closed` detaches its session, which a new stream may resume; one the service ends because of a
// bad request abandons it. A client that sends but does not read has its reads paused once a few
// replies wait, so that they cannot pile up here.
//
// Thread-safety: gRPC runs its reactions; the scheduler's notifications reach it on `pump`'s
// thread, which collects the events and starts their write.
#ifndef MPIGATE_SERVER_SESSION_REACTOR_H_
#define MPIGATE_SERVER_SESSION_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "server/scheduler.h"
#include "server/stream_pump.h"

namespace mpigate::server {

// Serves one Session call; the reactor deletes itself once the call is done. `scheduler`, `pump`
// and `shared_memory_domain` (the gateway's, common/shared_memory.h) must outlive the call.
grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartSessionStream(
    Scheduler& scheduler, StreamPump& pump, const std::string& shared_memory_domain);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SESSION_REACTOR_H_
