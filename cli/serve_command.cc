// `mpigate serve`: this process becomes mpigate-server.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"

namespace mpigate::cli {
namespace {

std::string ThisExecutable() {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return length > 0 ? std::string(path, static_cast<size_t>(length)) : std::string();
}

// $MPIGATE_SERVER; else a sibling of this program's real path: installed side by side, or
// Bazel's bazel-bin/cli next to bazel-bin/server (a test's runfiles link to those same files);
// else this program's own runfiles, for a copy of the binary that kept them but not its siblings.
absl::StatusOr<std::string> FindServerBinary() {
  if (const char* explicit_path = std::getenv("MPIGATE_SERVER");
      explicit_path != nullptr && explicit_path[0] != '\0') {
    if (access(explicit_path, X_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("$MPIGATE_SERVER=", explicit_path, " is not executable"));
    }
    return std::string(explicit_path);
  }
  const std::string self = ThisExecutable();
  const size_t slash = self.rfind('/');
  const std::string here = slash == std::string::npos ? "." : self.substr(0, slash);
  for (const std::string& candidate : {here + "/mpigate-server", here + "/../server/mpigate-server",
                                       self + ".runfiles/mpigate/server/mpigate-server"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot find mpigate-server next to ", here, "; set $MPIGATE_SERVER"));
}

}  // namespace

int RunServe(const CommandLine& line) {
  absl::StatusOr<std::string> server = FindServerBinary();
  if (!server.ok()) {
    PrintDiagnostic(absl::StrCat("serve: ", StatusText(server.status())));
    return kExitError;
  }
  std::vector<std::string> args = {*server};
  args.insert(args.end(), line.server_args.begin(), line.server_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(server->c_str(), argv.data());
  PrintDiagnostic(absl::StrCat("serve: cannot run ", *server, ": ", std::strerror(errno)));
  return kExitError;
}

}  // namespace mpigate::cli
