#include "server/gateway_bell.h"

#include <pthread.h>

#include <utility>

#include "absl/time/time.h"

namespace mpigate::server {

absl::StatusOr<std::unique_ptr<GatewayBell>> GatewayBell::Open(std::function<void()> on_ring) {
  absl::StatusOr<wire::Doorbell> bell = wire::Doorbell::Open();
  if (!bell.ok()) return bell.status();
  return std::unique_ptr<GatewayBell>(new GatewayBell(*std::move(bell), std::move(on_ring)));
}

GatewayBell::GatewayBell(wire::Doorbell bell, std::function<void()> on_ring)
    : bell_(std::move(bell)), on_ring_(std::move(on_ring)), thread_([this] { Loop(); }) {}

GatewayBell::~GatewayBell() {
  stopping_.store(true);
  // The thread waits on the bell: a ring of its own ends the wait. It cannot fail: the socket is
  // this process's, in a directory only its user may enter, and a full bell has rings waiting.
  bell_.Ring(bell_.address()).IgnoreError();
  thread_.join();
}

void GatewayBell::Loop() {
  // Named for those who look at the gateway's threads (worker_idle_wait_test counts its wakes).
  pthread_setname_np(pthread_self(), "mpigate-bell");
  while (!stopping_.load()) {
    if (bell_.Wait(absl::InfiniteDuration()) && !stopping_.load() &&
        wake_.load(std::memory_order_relaxed)) {
      on_ring_();
    }
  }
}

}  // namespace mpigate::server
