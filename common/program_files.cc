#include "common/program_files.h"

#include <linux/limits.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mpigate {

std::string DirectoryOf(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string ThisExecutable() {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return length > 0 ? std::string(path, static_cast<size_t>(length)) : std::string();
}

std::vector<std::string> ProgramFileCandidates(absl::string_view executable,
                                               absl::string_view bazel_package,
                                               absl::string_view name) {
  const std::string here = DirectoryOf(executable);
  std::vector<std::string> candidates = {
      absl::StrCat(here, "/", name),
      absl::StrCat(here, "/../lib/mpigate/", name),
      absl::StrCat(here, "/../", bazel_package, "/", name),
  };
  // A bare name says nothing of where the program's runfiles are.
  if (absl::StrContains(executable, '/')) {
    candidates.push_back(absl::StrCat(executable, ".runfiles/mpigate/", bazel_package, "/", name));
  }
  return candidates;
}

absl::StatusOr<std::string> FindProgramFileFrom(
    absl::string_view executable, absl::string_view bazel_package, absl::string_view name,
    const std::function<bool(const std::string&)>& usable) {
  for (std::string& candidate : ProgramFileCandidates(executable, bazel_package, name)) {
    if (usable(candidate)) return std::move(candidate);
  }
  return absl::NotFoundError(absl::StrCat("cannot find ", name, " next to ",
                                          DirectoryOf(executable), " (nor in ../lib/mpigate, ../",
                                          bazel_package, ")"));
}

absl::StatusOr<std::string> FindProgramFile(absl::string_view bazel_package, absl::string_view name,
                                            int access_mode) {
  return FindProgramFileFrom(
      ThisExecutable(), bazel_package, name,
      [access_mode](const std::string& path) { return access(path.c_str(), access_mode) == 0; });
}

absl::StatusOr<std::string> NamedOrFoundProgram(absl::string_view named, absl::string_view what,
                                                absl::string_view bazel_package,
                                                absl::string_view name, absl::string_view hint) {
  if (!named.empty()) {
    const std::string path(named);
    if (access(path.c_str(), X_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(what, path, " is not executable"));
    }
    return path;
  }
  absl::StatusOr<std::string> found = FindProgramFile(bazel_package, name, X_OK);
  if (!found.ok()) return absl::NotFoundError(absl::StrCat(found.status().message(), "; ", hint));
  return found;
}

}  // namespace mpigate
