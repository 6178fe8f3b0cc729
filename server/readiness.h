// Readiness: tells the world when the pool serves. Once the workers are up and the service
// listens, whichever comes last (the workers start while the gRPC server does), it prints the
// "ready" line scripts wait for and turns the health service (grpc.health.v1) to SERVING, unless
// the pool is broken; kFullSizeHealthService follows the pool's size (Degraded()). The endpoint
// file, which clients read, exists from Listening() to Draining(), which turns every name to
// NOT_SERVING for good.
//
// Thread-safety: HealthStarted(), Listening() and Draining() are called by the main thread,
// Booted() and Degraded() by the MPI thread.
#ifndef MPIGATE_SERVER_READINESS_H_
#define MPIGATE_SERVER_READINESS_H_

#include <grpcpp/health_check_service_interface.h>

#include <cstdio>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/endpoint.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::server {

// The health service name that is SERVING only while the pool is at full size: NOT_SERVING while
// it is degraded (workers lost and not replaced yet; PoolStatus.degraded_reason says why). The
// whole server ("") and mpigate.v1.Gateway stay SERVING meanwhile, since the pool still serves
// with the workers it has: a load balancer keeps sending it work, and a monitor that wants the
// pool whole watches this name.
inline constexpr char kFullSizeHealthService[] = "mpigate.pool.full_size";

class Readiness {
 public:
  // `launched`: when the process started, for the ready line, which goes to `out`.
  Readiness(absl::Time launched, int workers, FILE* out = stdout)
      : launched_(launched), workers_(workers), out_(out) {}

  // The gRPC server has started with `health`, which must outlive this: every name NOT_SERVING
  // (gRPC's default health service starts out SERVING; the pool is not up yet).
  void HealthStarted(grpc::HealthCheckServiceInterface* health);

  // Writes `endpoint` to `endpoint_file` and prints the "listening" line; clients may connect
  // from now on, their tasks queue until the workers are up.
  absl::Status Listening(const Endpoint& endpoint, const std::string& endpoint_file);

  // Every name NOT_SERVING, later changes ignored; the endpoint file removed, so that no new
  // client finds a server that is going away.
  void Draining();

  // Why the pool is degraded, or "" once it is whole again.
  void Degraded(const std::string& reason);

  void Booted(const v1::PoolStateChange& pool_state);

 private:
  void MaybeReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Time launched_;
  const int workers_;
  FILE* const out_;
  absl::Mutex mu_;
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  bool booted_ ABSL_GUARDED_BY(mu_) = false;
  // Both of the above: the health service has been told.
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool whole_ ABSL_GUARDED_BY(mu_) = true;
  std::string target_ ABSL_GUARDED_BY(mu_);
  std::string endpoint_file_ ABSL_GUARDED_BY(mu_);
  std::string broken_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_READINESS_H_
