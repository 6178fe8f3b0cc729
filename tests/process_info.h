// Processes as /proc shows them, for end-to-end tests that look at what a server started: which
// of its descendants run, how much memory and CPU time they have taken.
#ifndef MPIGATE_TESTS_PROCESS_INFO_H_
#define MPIGATE_TESTS_PROCESS_INFO_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate::testing {

// Whether this build's allocator is a sanitizer's: ASan's and TSan's keep freed memory in
// quarantine, so a process's resident memory says little about what it still uses.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerAllocator = true;
#else
inline constexpr bool kSanitizerAllocator = false;
#endif

// `root` and every live process below it (children, their children, ...), root first.
std::vector<pid_t> ProcessTree(pid_t root);

// The process's name: its executable's, cut by the kernel to 15 characters ("mpigate-runner",
// "mpigate-worker" and "orted" fit). Empty if it is gone.
std::string ProcessName(pid_t pid);

// The live processes below `root` whose name is `name`.
std::vector<pid_t> DescendantsNamed(pid_t root, absl::string_view name);

// Resident bytes now (VmRSS), and the most it has had resident (VmHWM). NOT_FOUND if the process
// is gone.
absl::StatusOr<uint64_t> ResidentBytes(pid_t pid);
absl::StatusOr<uint64_t> PeakResidentBytes(pid_t pid);

// A few lines per process, for a message about processes that did not end as they should: its
// pid, name, state (R running, S sleeping, D in uninterruptible sleep, T stopped, Z a zombie) and
// parent, then each of its threads with the kernel function it waits in (wchan) and the number
// of the system call it is in ("running" if none), from /proc. Gone processes are left out.
std::string DescribeProcesses(const std::vector<pid_t>& pids);

// The CPU time the process has used, user and system, in clock ticks. NOT_FOUND if it is gone.
absl::StatusOr<uint64_t> CpuTicks(pid_t pid);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_PROCESS_INFO_H_
