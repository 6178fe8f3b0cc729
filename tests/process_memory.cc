#include "tests/process_memory.h"

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace mpigate::testing {
namespace {

// The value of a "Name:   123 kB" line of /proc/PID/status, in bytes.
absl::StatusOr<uint64_t> StatusKilobytes(pid_t pid, absl::string_view field) {
  const std::string path = absl::StrCat("/proc/", pid, "/status");
  std::ifstream status(path);
  if (!status) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const std::string prefix = absl::StrCat(field, ":");
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    uint64_t kilobytes = 0;
    if (!absl::SimpleAtoi(rest, &kilobytes)) {
      return absl::InternalError(absl::StrCat("cannot parse ", path, ": ", line));
    }
    return kilobytes << 10;
  }
  return absl::NotFoundError(absl::StrCat(path, " has no ", field));
}

}  // namespace

absl::StatusOr<uint64_t> ResidentBytes(pid_t pid) { return StatusKilobytes(pid, "VmRSS"); }

absl::StatusOr<uint64_t> PeakResidentBytes(pid_t pid) { return StatusKilobytes(pid, "VmHWM"); }

}  // namespace mpigate::testing
