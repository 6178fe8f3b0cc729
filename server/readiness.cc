#include "server/readiness.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "mpigate/v1/gateway.grpc.pb.h"

namespace mpigate::server {

void Readiness::HealthStarted(grpc::HealthCheckServiceInterface* health) {
  absl::MutexLock lock(&mu_);
  health_ = health;
  health_->SetServingStatus(v1::Gateway::service_full_name(), false);
  health_->SetServingStatus(kFullSizeHealthService, false);
  health_->SetServingStatus(false);
}

absl::Status Readiness::Listening(const Endpoint& endpoint, const std::string& endpoint_file) {
  if (absl::Status status = WriteEndpointFile(endpoint_file, endpoint); !status.ok()) {
    return status;
  }
  std::fprintf(
      out_, "mpigate-server: listening on %s, endpoint file %s, starting %d workers, pid %d\n",
      endpoint.target.c_str(), endpoint_file.c_str(), workers_, static_cast<int>(getpid()));
  std::fflush(out_);
  Log(LogLevel::kInfo, "listening on ", endpoint.target, ", endpoint file ", endpoint_file,
      ", starting ", workers_, " workers, pid ", getpid());
  absl::MutexLock lock(&mu_);
  target_ = endpoint.target;
  endpoint_file_ = endpoint_file;
  listening_ = true;
  MaybeReadyLocked();
  return absl::OkStatus();
}

void Readiness::Draining() {
  absl::MutexLock lock(&mu_);
  // A pool that finishes booting during the drain does not turn it back.
  if (health_ != nullptr) health_->Shutdown();
  if (listening_) std::remove(endpoint_file_.c_str());
}

void Readiness::Degraded(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  whole_ = reason.empty();
  if (ready_ && broken_.empty()) health_->SetServingStatus(kFullSizeHealthService, whole_);
}

void Readiness::Booted(const v1::PoolStateChange& pool_state) {
  absl::MutexLock lock(&mu_);
  if (pool_state.state() == v1::POOL_STATE_BROKEN) {
    broken_ = absl::StrCat(" (pool broken: ", pool_state.reason(), ")");
  }
  booted_ = true;
  MaybeReadyLocked();
}

void Readiness::MaybeReadyLocked() {
  if (!listening_ || !booted_) return;
  ready_ = true;
  if (broken_.empty()) {
    health_->SetServingStatus(v1::Gateway::service_full_name(), true);
    health_->SetServingStatus(true);
    health_->SetServingStatus(kFullSizeHealthService, whole_);
  }
  Log(LogLevel::kInfo, "ready: ", workers_, " workers", broken_, ", listening on ", target_);
  // The pid is there because under mpiexec the process to signal is this one: mpiexec itself
  // kills the job at once on SIGTERM, without a drain.
  std::fprintf(out_,
               "mpigate-server: ready in %.2f s: %d workers%s, listening on %s, endpoint file %s, "
               "pid %d\n",
               absl::ToDoubleSeconds(absl::Now() - launched_), workers_, broken_.c_str(),
               target_.c_str(), endpoint_file_.c_str(), static_cast<int>(getpid()));
  std::fflush(out_);
}

}  // namespace mpigate::server
