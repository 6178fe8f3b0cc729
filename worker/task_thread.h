// TaskThread: the thread that runs task code in a worker process, one job at a time.
//
// Task code runs here rather than on the MPI thread so that the MPI thread keeps hearing the
// gateway while a task runs: a shutdown that arrives while a task is stuck still stops the worker.
// The MPI thread waits for a job on the job's own condition (no polling), waking only now and then
// to look for frames from the gateway.
//
// Thread-safety: Start(), AwaitIdle() and busy() are called by one controlling thread (the MPI
// thread); the job runs on the task thread.
#ifndef MPIGATE_WORKER_TASK_THREAD_H_
#define MPIGATE_WORKER_TASK_THREAD_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mpigate::worker {

class TaskThread {
 public:
  TaskThread();
  // Joins the thread if it is idle. If a job is still running, the thread is detached: the
  // process is about to exit and the job cannot be interrupted.
  ~TaskThread();
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;

  // Runs `job` on the task thread. Requires !busy().
  void Start(absl::AnyInvocable<void() &&> job);

  // Waits until the job has finished or `timeout` passes; true if it has finished. What the job
  // wrote is visible to the caller once this returns true.
  bool AwaitIdle(absl::Duration timeout);

  bool busy() const;

 private:
  void Loop();
  bool HasJobOrQuit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::AnyInvocable<void() &&> job_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_THREAD_H_
