// The preload library for Open MPI's daemon (see loopback_listeners.h): rewriting on for the whole
// process, and the library out of LD_PRELOAD before the daemon reads its environment, so that the
// processes it starts (the workers, their task runners, programs that tasks run) do not load it:
// a sanitizer-instrumented worker refuses any library preloaded ahead of its runtime.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "common/loopback_bind.h"

// Whether `entry` (one entry of LD_PRELOAD, `length` bytes) names the file `self` names.
static int SameLibrary(const char* entry, size_t length, const char* self) {
  const char* self_base = strrchr(self, '/');
  self_base = self_base == NULL ? self : self_base + 1;
  const char* entry_base = entry;
  for (size_t i = 0; i < length; ++i) {
    if (entry[i] == '/') entry_base = entry + i + 1;
  }
  const size_t base_length = length - (size_t)(entry_base - entry);
  return base_length == strlen(self_base) && memcmp(entry_base, self_base, base_length) == 0;
}

// Runs before the daemon's main(), while it is one thread.
__attribute__((constructor)) static void StartInDaemon(void) {
  MpigateSetLoopbackBind(1);
  Dl_info self;
  const char* preload = getenv("LD_PRELOAD");
  if (preload == NULL || dladdr((void*)&StartInDaemon, &self) == 0 || self.dli_fname == NULL) {
    return;
  }
  // LD_PRELOAD separates entries with colons or spaces; the others are kept, in order.
  char* kept = malloc(strlen(preload) + 1);
  if (kept == NULL) return;
  size_t used = 0;
  for (const char* entry = preload; *entry != '\0';) {
    const size_t length = strcspn(entry, ": ");
    if (length > 0 && !SameLibrary(entry, length, self.dli_fname)) {
      if (used > 0) kept[used++] = ':';
      memcpy(kept + used, entry, length);
      used += length;
    }
    entry += length;
    if (*entry != '\0') ++entry;
  }
  kept[used] = '\0';
  if (used == 0) {
    unsetenv("LD_PRELOAD");
  } else {
    setenv("LD_PRELOAD", kept, /*overwrite=*/1);
  }
  free(kept);
}
