#include "common/memory_release.h"

#include <malloc.h>

#include <cstddef>

#include "common/log.h"

// TCMalloc's C interface (gperftools/malloc_extension_c.h), declared weak: null unless the binary
// links TCMalloc, so that this library does not pull it into builds that use another allocator.
extern "C" {
int MallocExtension_GetNumericProperty(const char* property, size_t* value) __attribute__((weak));
void MallocExtension_ReleaseFreeMemory() __attribute__((weak));
}

namespace mpigate {
namespace {

bool HaveTcmalloc() {
  return MallocExtension_GetNumericProperty != nullptr &&
         MallocExtension_ReleaseFreeMemory != nullptr;
}

uint64_t TcmallocProperty(const char* name) {
  size_t value = 0;
  return MallocExtension_GetNumericProperty(name, &value) ? value : 0;
}

void ReleaseAllFreeHeap() {
  if (HaveTcmalloc()) {
    MallocExtension_ReleaseFreeMemory();
  } else {
    malloc_trim(0);
  }
}

}  // namespace

HeapUse ReadHeapUse() {
  HeapUse use;
  if (HaveTcmalloc()) {
    use.in_use = TcmallocProperty("generic.current_allocated_bytes");
    // Free pages still mapped; those already released count as unmapped.
    use.free_held = TcmallocProperty("tcmalloc.pageheap_free_bytes");
    return use;
  }
  const struct mallinfo2 info = mallinfo2();
  use.in_use = info.uordblks;
  use.free_held = info.fordblks;
  return use;
}

void ReleaseFreeHeap(uint64_t keep_free_bytes) {
  if (ReadHeapUse().free_held > keep_free_bytes) ReleaseAllFreeHeap();
}

bool ShouldRelease(const HeapUse& before, const HeapUse& now, uint64_t keep_free_bytes) {
  return now.in_use == before.in_use && now.free_held > keep_free_bytes;
}

IdleMemoryRelease::IdleMemoryRelease(Options options)
    : options_(options), thread_(&IdleMemoryRelease::Run, this) {}

IdleMemoryRelease::~IdleMemoryRelease() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void IdleMemoryRelease::Run() {
  HeapUse before = ReadHeapUse();
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.interval)) {
    const HeapUse now = ReadHeapUse();
    if (ShouldRelease(before, now, options_.keep_free_bytes)) {
      ReleaseAllFreeHeap();
      Log(LogLevel::kDebug, "released ", now.free_held >> 20,
          " MiB of free heap to the system after a quiet ",
          absl::FormatDuration(options_.interval));
      before = ReadHeapUse();
    } else {
      before = now;
    }
  }
}

}  // namespace mpigate
