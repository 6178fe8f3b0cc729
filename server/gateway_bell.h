// GatewayBell: the gateway's doorbell (wire/doorbell.h). The MPI thread rings each local worker's
// doorbell from it after the frames it sends that worker; a worker that a ring woke from its idle
// wait, or whose task ran past the gateway's hot polls, rings it back once its result is sent. A
// thread of the bell's own waits for those rings and wakes the MPI thread (`on_ring`), which by
// then sleeps between polls (wire::PollBackoff) and would otherwise find the result only when its
// sleep ends: up to a millisecond late.
//
// A ring back only wakes: the result itself comes through MPI, and the MPI thread's polls still
// find it without one (a worker on another host never rings).
//
// While the MPI thread lets results wait on purpose (more tasks in flight than workers: it takes
// them several at a time), ring backs are taken and ignored (WakeOnRingBacks()).
//
// Thread-safety: Ring() and WakeOnRingBacks() are the MPI thread's; `on_ring` runs on the bell's
// thread and must be quick.
#ifndef MPIGATE_SERVER_GATEWAY_BELL_H_
#define MPIGATE_SERVER_GATEWAY_BELL_H_

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wire/doorbell.h"

namespace mpigate::server {

class GatewayBell {
 public:
  // Opens the bell and starts its thread.
  static absl::StatusOr<std::unique_ptr<GatewayBell>> Open(std::function<void()> on_ring);
  // Stops the thread and closes the bell.
  ~GatewayBell();
  GatewayBell(const GatewayBell&) = delete;
  GatewayBell& operator=(const GatewayBell&) = delete;

  // Rings the worker doorbell at `address`: wire::Doorbell::Ring().
  absl::Status Ring(absl::string_view address) { return bell_.Ring(address); }

  // Whether a ring back calls `on_ring` from now on (at first it does).
  void WakeOnRingBacks(bool wake) { wake_.store(wake, std::memory_order_relaxed); }

 private:
  GatewayBell(wire::Doorbell bell, std::function<void()> on_ring);
  void Loop();

  wire::Doorbell bell_;
  const std::function<void()> on_ring_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> wake_{true};
  std::thread thread_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_GATEWAY_BELL_H_
