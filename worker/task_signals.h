// TaskSignals: a running task's cancellation flag and its latest progress report, between the
// thread that runs the task and the worker's MPI thread, which forwards the report to the gateway
// and sets the flag when the gateway interrupts the task.
//
// Thread-safety: Report() on the task's thread, TakeProgress() and Reset() on the MPI thread;
// `cancelled` is set by the MPI thread and read by the task. One per task slot, reused.
#ifndef MPIGATE_WORKER_TASK_SIGNALS_H_
#define MPIGATE_WORKER_TASK_SIGNALS_H_

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "wire/frames.pb.h"
#include "worker/task.h"

namespace mpigate::worker {

class TaskSignals final : public ProgressSink {
 public:
  // For the next task; only while no task runs.
  void Reset() {
    cancelled.store(false, std::memory_order_relaxed);
    absl::MutexLock lock(&mu_);
    reported_ = false;
  }

  void Report(double fraction, absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    fraction_ = fraction;
    message_.assign(message.data(), message.size());
    reported_ = true;
  }

  // If the task has reported since the last call, fills `frame` and returns true.
  bool TakeProgress(wire::ProgressFrame& frame) {
    absl::MutexLock lock(&mu_);
    if (!reported_) return false;
    reported_ = false;
    frame.set_fraction(fraction_);
    frame.set_message(message_);
    return true;
  }

  std::atomic<bool> cancelled{false};

 private:
  absl::Mutex mu_;
  bool reported_ ABSL_GUARDED_BY(mu_) = false;
  double fraction_ ABSL_GUARDED_BY(mu_) = 0;
  std::string message_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_SIGNALS_H_
