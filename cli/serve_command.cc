// `mpigate serve`: this process becomes mpigate-server.
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
#include "common/program_files.h"

namespace mpigate::cli {
namespace {

// $MPIGATE_SERVER; else where common/program_files.h finds mpigate's files: installed side by
// side, or Bazel's bazel-bin/cli next to bazel-bin/server (a test's runfiles link to those same
// files), or this program's own runfiles, for a copy of the binary that kept them but not its
// siblings.
absl::StatusOr<std::string> FindServerBinary() {
  const char* named = std::getenv("MPIGATE_SERVER");
  return NamedOrFoundProgram(named == nullptr ? "" : named, "$MPIGATE_SERVER=", "server",
                             "mpigate-server", "set $MPIGATE_SERVER");
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
