// Shared memory objects: how large payloads and results skip the copies of the gRPC and MPI hops
// when the client, the gateway and the worker share a host. This file only moves bytes; who
// creates and who releases each object is the protocol's business (task.proto, SharedBytes).
//
// An object is a POSIX shared memory object (/dev/shm), owned by the user, mode 0600, named with
// its gateway's unguessable prefix (NewSharedObjectPrefix) and 16 random hex digits, so that a
// gateway can tell its own objects from anything else and remove what is left of them at exit.
// /dev/shm is open to every local user, so no object is trusted by name: new ones are made with
// O_EXCL, and one opened by name is used only if it is a regular file of this effective user with
// no group or other bits (DATA_LOSS otherwise, its bytes unread).
//
// A released object is parked under its prefix (a few per power-of-two size class, up to
// kMaxParkedObjectBytes) and reused by the next CreateSharedObject of that prefix, because fresh
// pages are most of what an object costs.
//
// Two processes may exchange objects only if their SharedMemoryDomain()s are equal.
//
// Thread-safety: every function may be called from any thread.
#ifndef MPIGATE_COMMON_SHARED_MEMORY_H_
#define MPIGATE_COMMON_SHARED_MEMORY_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace mpigate {

// The shared memory this process sees: the boot, the /dev/shm file system and the user. Empty if
// it cannot tell (no /dev/shm), or if MPIGATE_SHARED_MEMORY=off in its environment (to keep a
// client or worker off shared memory, e.g. where /dev/shm is small): empty matches nothing.
std::string SharedMemoryDomain();

// A new name prefix for the objects of the gateway with process id `gateway_pid`:
// "mpigate-<pid namespace>-<pid>-<32 random hex digits>-", so that no other user can guess it
// before the gateway's first object shows it. INTERNAL if the kernel gives no random bytes.
absl::StatusOr<std::string> NewSharedObjectPrefix(pid_t gateway_pid);

// Whether `name` is an object name with `prefix`: the prefix, then 16 lowercase hex digits.
bool IsSharedObjectName(absl::string_view name, absl::string_view prefix);

// The largest object that is parked when released.
inline constexpr uint64_t kMaxParkedObjectBytes = uint64_t{8} << 20;

// Creates an object with `prefix` holding `bytes` (a parked one of its size class that passes the
// owner and mode check, or a new one made with O_EXCL); returns its new name. RESOURCE_EXHAUSTED
// when /dev/shm is full, ALREADY_EXISTS if every new name tried exists (someone else made it),
// nothing left behind.
absl::StatusOr<std::string> CreateSharedObject(absl::string_view prefix, absl::string_view bytes);

// Done with object `name`: parks it for the next CreateSharedObject of its prefix if it is ours
// (owner and mode), small enough and its size class has room, removes it otherwise; one already
// gone is no error. Only once no process will read it again: whoever takes it next overwrites it.
void ReleaseSharedObject(absl::string_view name);

// A copy of `bytes`. A large one is backed by transparent huge pages where the kernel offers them
// on request, since faulting in fresh 4 KiB pages one by one costs about as much as the copy.
std::string LargeCopy(absl::string_view bytes);

// The `size` bytes of object `name` (a LargeCopy). DATA_LOSS if it is missing, holds another size,
// or is not a private object of this user (see above).
absl::StatusOr<std::string> ReadSharedObject(absl::string_view name, uint64_t size);

// Object `name` mapped read-only, for as long as this lives. Move-only.
class SharedMapping {
 public:
  // DATA_LOSS if the object is missing, holds another size than `size`, or is not a private
  // object of this user (see above).
  static absl::StatusOr<SharedMapping> Map(absl::string_view name, uint64_t size);

  SharedMapping(SharedMapping&& other) noexcept;
  SharedMapping& operator=(SharedMapping&& other) noexcept;
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping();

  absl::string_view bytes() const { return absl::string_view(data_, size_); }

 private:
  SharedMapping(const char* data, size_t size) : data_(data), size_(size) {}

  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Removes object `name`; one already gone is no error. Mappings of it stay valid.
void UnlinkSharedObject(absl::string_view name);

// Releases objects (ReleaseSharedObject) on a thread of its own, so that freeing a large object's
// pages never holds up the caller. Idle, its thread waits on a condition.
//
// Thread-safety: Release() from any thread; the destructor releases what is queued and joins.
class SharedObjectReaper {
 public:
  SharedObjectReaper();
  ~SharedObjectReaper();
  SharedObjectReaper(const SharedObjectReaper&) = delete;
  SharedObjectReaper& operator=(const SharedObjectReaper&) = delete;

  void Release(std::string name);

 private:
  void Loop();

  absl::Mutex mu_;
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Removes every object of this user with `prefix`, parked ones too; returns how many.
int UnlinkSharedObjects(absl::string_view prefix);

// Removes this user's objects of gateways that are no longer running (a gateway killed before it
// could clean up); returns how many. Objects of other users are left alone, whatever their names.
int UnlinkOrphanedSharedObjects();

}  // namespace mpigate

#endif  // MPIGATE_COMMON_SHARED_MEMORY_H_
