#include "worker/task_thread.h"

#include <utility>

namespace mpigate::worker {

TaskThread::TaskThread() : thread_(&TaskThread::Loop, this) {}

TaskThread::~TaskThread() {
  bool running;
  {
    absl::MutexLock lock(&mu_);
    quit_ = true;
    running = busy_;
  }
  if (running) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void TaskThread::Start(absl::AnyInvocable<void() &&> job) {
  absl::MutexLock lock(&mu_);
  job_ = std::move(job);
  busy_ = true;
}

bool TaskThread::AwaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(this, &TaskThread::Idle), timeout);
}

bool TaskThread::busy() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

bool TaskThread::HasJobOrQuit() const { return quit_ || job_ != nullptr; }

bool TaskThread::Idle() const { return !busy_; }

void TaskThread::Loop() {
  while (true) {
    absl::AnyInvocable<void() &&> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &TaskThread::HasJobOrQuit));
      if (job_ == nullptr) return;
      job = std::move(job_);
      job_ = nullptr;
    }
    std::move(job)();
    absl::MutexLock lock(&mu_);
    busy_ = false;
  }
}

}  // namespace mpigate::worker
