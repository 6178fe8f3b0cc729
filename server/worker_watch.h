// WorkerWatch: tells, within milliseconds, that a worker process on the gateway's host has ended,
// however it ended and whoever its parent is (Open MPI's daemon, which reaps it).
//
// Open MPI 4.1 reports the loss of a process through no MPI call (docs/worker-loss.md): the
// gateway's receives from it simply never complete, and a send to it never does. So the gateway
// watches each local worker's pid from outside MPI: a pidfd (pidfd_open(2)) becomes readable when
// its process ends, and cannot be fooled by the pid's reuse. A thread of its own polls them all,
// so that a loss is seen while the MPI thread blocks waiting for work.
//
// Thread-safety: every method may be called from any thread; `on_end` runs on the watch thread,
// without the watch's lock held, and must be quick (it wakes the MPI thread).
#ifndef MPIGATE_SERVER_WORKER_WATCH_H_
#define MPIGATE_SERVER_WORKER_WATCH_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::server {

class WorkerWatch {
 public:
  // Starts the watch thread; `on_end` is called after each process that ended has been recorded.
  explicit WorkerWatch(std::function<void()> on_end);
  // Stops the thread and closes every pidfd.
  ~WorkerWatch();
  WorkerWatch(const WorkerWatch&) = delete;
  WorkerWatch& operator=(const WorkerWatch&) = delete;

  // Watches process `pid` (of this host and pid namespace) under `id`, which the caller picks
  // and TakeEnded() reports. A process that is gone already is reported at once. An error only
  // if it cannot be watched at all (no pidfd_open: Linux before 5.3).
  absl::Status Watch(uint64_t id, pid_t pid);

  // Stops watching `id` (a process that ended in order); no effect if it is not watched.
  void Unwatch(uint64_t id);

  // The ids whose processes have ended since the last call, in the order seen.
  std::vector<uint64_t> TakeEnded();

 private:
  void Loop();
  // Wakes the thread to poll the current set of pidfds.
  void Poke();

  const std::function<void()> on_end_;
  // Written to wake the thread (an eventfd).
  int wake_fd_ = -1;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, int> pidfds_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> ended_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_WORKER_WATCH_H_
