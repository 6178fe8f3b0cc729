// CliProcess: runs the real `mpigate` binary (from the test's runfiles) as a child process, feeds
// its stdin and collects its stdout, stderr and exit code, for the command line's end-to-end
// tests. stderr is a pipe, or, to test what a person at a terminal sees, a pseudo-terminal
// (openpty) while stdout stays a pipe.
//
//   absl::StatusOr<CliResult> run = RunMpigate({"submit", "echo", "hi"}, {.stdin_text = ""});
//   EXPECT_EQ(run->exit_code, 0);
//
// Thread-safety: RunMpigate may be called from any thread; it blocks until the child exits (and
// CliOptions::while_running has returned).
#ifndef MPIGATE_TESTS_CLI_CLI_PROCESS_H_
#define MPIGATE_TESTS_CLI_CLI_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mpigate::testing {

struct CliOptions {
  // Written to the child's stdin, which is then closed.
  std::string stdin_text;
  // Changes to the child's environment (otherwise this process's): a value sets the variable,
  // nullopt removes it.
  std::vector<std::pair<std::string, std::optional<std::string>>> env;
  // stderr on a pseudo-terminal this many columns wide, instead of a pipe.
  bool stderr_on_terminal = false;
  // With stderr_on_terminal: stdout on the same terminal (CliResult::stdout_text stays empty;
  // everything is in stderr_text), as in an interactive shell.
  bool stdout_on_terminal = false;
  int terminal_columns = 100;
  // Called with the child's pid on a thread of its own once the child has started, while its
  // output is collected (e.g. to signal it once it is busy); RunMpigate returns once both the
  // child and this have ended. A callback that gives up should kill the child.
  std::function<void(pid_t)> while_running;
};

struct CliResult {
  // The exit status (0 to 255); -signal if a signal killed it.
  int exit_code = -1;
  std::string stdout_text;
  // From a terminal, with its line discipline's "\r\n" for every "\n".
  std::string stderr_text;
};

// The path of the mpigate binary in the runfiles.
std::string MpigateBinary();

// Runs `mpigate args...` to its end. An error only if it cannot be started or waited for.
absl::StatusOr<CliResult> RunMpigate(const std::vector<std::string>& args,
                                     const CliOptions& options = {});

// This process's environment with `changes` applied, as "NAME=VALUE" strings.
std::vector<std::string> ChildEnvironment(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_CLI_CLI_PROCESS_H_
