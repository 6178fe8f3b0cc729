// Free heap pages given back to the operating system once a process has gone quiet after a peak:
// IdleMemoryRelease, a thread that watches the gateway's heap, and ReleaseFreeHeap, which the task
// runner calls once it has waited a while for its next task.
//
// The gateway: a burst of large tasks, or many sessions at once, grows the heap by hundreds of
// megabytes; once they are freed the allocator keeps those pages for reuse, so without this the
// gateway held its peak for the rest of the allocation (32 -> 405 MB after 400 echoes of 1 MiB,
// flat while idle), on nodes it shares with the clients' own jobs. Releasing while tasks flow would
// only trade the pages for page faults on the next burst, so a thread looks every `interval` and
// releases when the heap's use did not change over the last interval (quiet) and it holds more than
// `keep_free_bytes` free. Idle it wakes once per interval: a few microseconds of CPU.
//
// The task runner: a large task (an echo of 256 MiB) left its runner holding the task's pages,
// 282 MB resident against 20 MB, for as long as it lived. Besides the memory, a process that
// holds that much pays for it on every wake-up after an idle spell on some virtual machines (on
// the 2-vCPU development VM, a process holding 256 MiB took 4-5 ms to answer its first pipe
// message after 10 s idle, one holding nothing 0.2 ms), which made the first task after an idle
// spell 10-24 ms instead of 2-5 ms once the pool had run large tasks.
//
// The allocator is TCMalloc where the binary links it (bazel:malloc), else glibc's malloc
// (sanitizer builds bring their own allocators, which neither call reaches).
//
// Thread-safety: ReadHeapUse and ReleaseFreeHeap from any thread. IdleMemoryRelease: construct and
// destroy on one thread; the work happens on a thread of its own.
#ifndef MPIGATE_COMMON_MEMORY_RELEASE_H_
#define MPIGATE_COMMON_MEMORY_RELEASE_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mpigate {

// What the heap holds: bytes in use by the program, and bytes free that the allocator keeps.
struct HeapUse {
  uint64_t in_use = 0;
  uint64_t free_held = 0;
};

// The heap's use as the allocator reports it.
HeapUse ReadHeapUse();

// Gives the free heap back if the allocator holds more than `keep_free_bytes` of it free.
void ReleaseFreeHeap(uint64_t keep_free_bytes);

// Whether to release, given the use at the last look and now: quiet (in use unchanged) and more
// than `keep_free_bytes` held free.
bool ShouldRelease(const HeapUse& before, const HeapUse& now, uint64_t keep_free_bytes);

class IdleMemoryRelease {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(5);
    uint64_t keep_free_bytes = uint64_t{32} << 20;
  };

  // Starts the thread.
  explicit IdleMemoryRelease(Options options);
  // Stops and joins it.
  ~IdleMemoryRelease();
  IdleMemoryRelease(const IdleMemoryRelease&) = delete;
  IdleMemoryRelease& operator=(const IdleMemoryRelease&) = delete;

 private:
  void Run();

  const Options options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mpigate

#endif  // MPIGATE_COMMON_MEMORY_RELEASE_H_
