// mpigate: the command line of an mpigate service (serve, submit, map, status, top, shutdown).
// `mpigate --help` lists the commands and the exit codes; cli/commands.h runs them.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/command_line.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"

int main(int argc, char** argv) {
  using namespace mpigate::cli;  // NOLINT(build/namespaces): main only dispatches.
  const std::vector<std::string> args(argv + 1, argv + argc);
  const absl::StatusOr<CommandLine> line = ParseCommandLine(args);
  if (!line.ok()) {
    std::fprintf(stderr, "mpigate: %s\n", std::string(line.status().message()).c_str());
    return kExitUsage;
  }
  if (line->help) {
    std::fputs(UsageText(line->command).c_str(), stdout);
    return std::fflush(stdout) == 0 ? kExitSuccess : kExitError;
  }
  switch (line->command) {
    case Command::kServe:
      return RunServe(*line);
    case Command::kSubmit:
      return RunSubmit(*line);
    case Command::kMap:
      return RunMap(*line);
    case Command::kStatus:
      return RunStatus(*line);
    case Command::kShutdown:
      return RunShutdown(*line);
    case Command::kTop:
      return RunTop(*line);
    case Command::kNone:
      break;
  }
  // ParseCommandLine returns kNone only with `help`.
  return kExitUsage;
}
