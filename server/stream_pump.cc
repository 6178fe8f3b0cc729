#include "server/stream_pump.h"

#include <utility>

namespace mpigate::server {

StreamPump::StreamPump() : thread_(&StreamPump::Loop, this) {}

StreamPump::~StreamPump() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void StreamPump::Post(std::shared_ptr<Pumpable> pumpable) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(pumpable));
}

void StreamPump::Loop() {
  const auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  };
  std::shared_ptr<Pumpable> next;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    next->Pump();
    next.reset();
  }
}

}  // namespace mpigate::server
