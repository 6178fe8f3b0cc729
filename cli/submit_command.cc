// `mpigate submit FUNCTION [PAYLOAD]`: one task, its result bytes on stdout. SIGINT and SIGTERM
// while it runs kill it (cli/interrupt.h) and end the command with kExitInterrupted.
#include <cstdio>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/interrupt.h"
#include "client/executor.h"

namespace mpigate::cli {

int RunSubmit(const CommandLine& line) {
  std::string payload;
  if (line.payload.has_value()) {
    payload = *line.payload;
  } else {
    absl::StatusOr<std::string> input = ReadInput("-");
    if (!input.ok()) {
      PrintDiagnostic(absl::StrCat("submit: ", StatusText(input.status())));
      return kExitError;
    }
    payload = *std::move(input);
  }

  absl::StatusOr<std::unique_ptr<Executor>> executor = ConnectExecutor(line, "mpigate submit");
  if (!executor.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(executor.status())));
    return ExitCodeForServiceError(executor.status());
  }
  absl::StatusOr<std::string> result;
  {
    // From before the submission to the result: a signal kills the task, which wakes Result().
    InterruptWatcher watcher;
    Future future = (*executor)->Submit(line.function, std::move(payload));
    watcher.OnInterrupt([future]() mutable { future.Kill(); });
    result = future.Result(line.timeout);
    if (watcher.interrupted()) {
      PrintDiagnostic("interrupted: 0 of 1 items done");
      return kExitInterrupted;
    }
    if (!result.ok() && !future.Done()) {
      // Our wait timed out, not the task. Kill it rather than leave it to the pool: the executor
      // waits for its futures when it is destroyed, and nobody would read this one's result.
      future.Kill();
      result = absl::DeadlineExceededError(absl::StrCat(
          "no result within ", absl::FormatDuration(line.timeout), "; the task was cancelled"));
    }
  }
  if (!result.ok()) {
    PrintDiagnostic(absl::StrCat(line.function, " failed: ", StatusText(result.status())));
    return ExitCodeForTaskError(result.status());
  }
  if (std::fwrite(result->data(), 1, result->size(), stdout) != result->size() ||
      std::fflush(stdout) != 0) {
    PrintDiagnostic("submit: cannot write the result to stdout");
    return kExitError;
  }
  return kExitSuccess;
}

}  // namespace mpigate::cli
