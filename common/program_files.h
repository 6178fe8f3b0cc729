// Where mpigate's programs find each other's files: the server its worker, task runner and
// libraries, a worker its task runner, `mpigate serve` the server. Every finder of a file that
// ships with mpigate goes through here, so that the layouts they accept cannot drift apart.
//
//   absl::StatusOr<std::string> worker = FindProgramFile("worker", "mpigate-worker", X_OK);
//
// Relative to the directory D of the running executable, in this order:
//   D/NAME                        side by side: a flat install, or the same Bazel package
//   D/../lib/mpigate/NAME         installed: PREFIX/bin next to PREFIX/lib/mpigate (the Debian
//                                 package: /usr/bin and /usr/lib/mpigate)
//   D/../PACKAGE/NAME             a Bazel tree: bazel-bin/server next to bazel-bin/worker
//   EXE.runfiles/mpigate/PACKAGE/NAME   the executable's own Bazel runfiles
// PACKAGE is the Bazel package that builds NAME ("worker", "worker/python", "common", "server").
// No environment variable is consulted: callers that honour one check it first.
//
// Thread-safety: pure functions, and FindProgramFile reads the file system only.
#ifndef MPIGATE_COMMON_PROGRAM_FILES_H_
#define MPIGATE_COMMON_PROGRAM_FILES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate {

// Everything before the last '/' of `path`: "." when there is none, "/" for a file at the root.
std::string DirectoryOf(absl::string_view path);

// The running executable's path (/proc/self/exe, symbolic links resolved); empty if unreadable.
std::string ThisExecutable();

// The places NAME may be for an executable at `executable`, in search order (see above). An
// empty or slash-free `executable` (a program run through PATH from an unknown place) is taken
// to be in ".".
std::vector<std::string> ProgramFileCandidates(absl::string_view executable,
                                               absl::string_view bazel_package,
                                               absl::string_view name);

// The first candidate for which `usable(path)` holds. NOT_FOUND otherwise, naming NAME and
// the directory searched from.
absl::StatusOr<std::string> FindProgramFileFrom(
    absl::string_view executable, absl::string_view bazel_package, absl::string_view name,
    const std::function<bool(const std::string&)>& usable);

// FindProgramFileFrom(ThisExecutable(), ...) with access(path, access_mode) == 0 (X_OK for a
// program, R_OK for a library).
absl::StatusOr<std::string> FindProgramFile(absl::string_view bazel_package, absl::string_view name,
                                            int access_mode);

// An executable the user named (a flag or an environment variable), else FindProgramFile's.
// `named` must then be executable: NOT_FOUND "<what><named> is not executable" otherwise (`what`
// ends with its separator: "worker binary ", "$MPIGATE_SERVER="). A
// search that finds nothing says `hint` (how to name one) after where it looked.
absl::StatusOr<std::string> NamedOrFoundProgram(absl::string_view named, absl::string_view what,
                                                absl::string_view bazel_package,
                                                absl::string_view name, absl::string_view hint);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_PROGRAM_FILES_H_
