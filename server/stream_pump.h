// StreamPump: the thread on which the gRPC adapter collects a session's events and starts their
// writes, so that the thread that produced them (the MPI thread, completing tasks) only hands them
// over and never packs messages or calls gRPC.
//
// PumpedListener is the SessionListener the adapter gives the scheduler: told that its session
// has events, it queues itself on the pump, whose thread then calls its target's
// OnSessionEvents() unless the target has detached meanwhile.
//
// Thread-safety: Post() and PumpedListener::OnSessionEvents() may be called from any thread,
// and never block on a target. Targets run on the pump's thread, one at a time, in posting order.
// The pump must outlive every listener's target (the adapter owns it and outlives its calls).
#ifndef MPIGATE_SERVER_STREAM_PUMP_H_
#define MPIGATE_SERVER_STREAM_PUMP_H_

#include <atomic>
#include <deque>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/scheduler.h"

namespace mpigate::server {

class StreamPump {
 public:
  // Something the pump's thread runs when it is posted.
  class Pumpable {
   public:
    virtual ~Pumpable() = default;
    virtual void Pump() = 0;
  };

  StreamPump();
  // Stops the thread once it has run what it is running; what is still queued is dropped.
  ~StreamPump();
  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  // Queues `pumpable`, held until its Pump() has returned.
  void Post(std::shared_ptr<Pumpable> pumpable);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Pumpable>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Forwards the scheduler's notifications to `Target` (a session's reactor, or a Run call's
// handler) on the pump's thread, until Detach(). The scheduler holds it by shared_ptr, so it may
// outlive its target without dangling. Target::OnSessionEvents() runs on the pump's thread only.
template <typename Target>
class PumpedListener final : public SessionListener,
                             public StreamPump::Pumpable,
                             public std::enable_shared_from_this<PumpedListener<Target>> {
 public:
  PumpedListener(StreamPump& pump, Target* target) : pump_(pump), target_(target) {}

  // From the scheduler, on any thread: hands over and returns. A listener already waiting on
  // the pump is not queued again: its one Pump() takes every event there is by then.
  void OnSessionEvents() override {
    if (!queued_.exchange(true, std::memory_order_acq_rel)) pump_.Post(this->shared_from_this());
  }

  void Pump() override {
    // Cleared before the target looks, so that events after this point queue it again.
    queued_.store(false, std::memory_order_release);
    absl::MutexLock lock(&mu_);
    if (target_ != nullptr) target_->OnSessionEvents();
  }

  // After this returns the target is never called again.
  void Detach() {
    absl::MutexLock lock(&mu_);
    target_ = nullptr;
  }

 private:
  StreamPump& pump_;
  std::atomic<bool> queued_{false};
  absl::Mutex mu_;
  Target* target_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_STREAM_PUMP_H_
