// What a process holds in memory, as /proc/PID/status says: for tests that bound a process's
// memory (a peak it must stay under, memory it must give back).
#ifndef MPIGATE_TESTS_PROCESS_MEMORY_H_
#define MPIGATE_TESTS_PROCESS_MEMORY_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace mpigate::testing {

// Resident bytes now (VmRSS), and the most it has had resident (VmHWM). NOT_FOUND if the process
// is gone.
absl::StatusOr<uint64_t> ResidentBytes(pid_t pid);
absl::StatusOr<uint64_t> PeakResidentBytes(pid_t pid);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_PROCESS_MEMORY_H_
