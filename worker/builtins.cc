#include "worker/builtins.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mpigate::worker {
namespace {

// Reads a duration in milliseconds, written as ASCII decimal.
absl::StatusOr<absl::Duration> ParseMilliseconds(absl::string_view input) {
  int64_t ms = 0;
  if (!absl::SimpleAtoi(input, &ms) || ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected a non-negative number of milliseconds, got '", input.substr(0, 64), "'"));
  }
  return absl::Milliseconds(ms);
}

absl::StatusOr<std::string> Echo(const TaskContext&, absl::string_view input) {
  return std::string(input);
}

absl::Status Interrupted(absl::string_view function, absl::Time start) {
  return absl::CancelledError(absl::StrCat(function, " interrupted after ",
                                           absl::ToInt64Milliseconds(absl::Now() - start), " ms"));
}

// Both honour an interrupt within a few milliseconds, as long-running task code should.
absl::StatusOr<std::string> Sleep(const TaskContext& context, absl::string_view input) {
  absl::StatusOr<absl::Duration> duration = ParseMilliseconds(input);
  if (!duration.ok()) return duration.status();
  const absl::Time start = absl::Now();
  const absl::Time end = start + *duration;
  for (absl::Time now = start; now < end; now = absl::Now()) {
    if (context.cancelled()) return Interrupted("sleep", start);
    context.ReportProgress(absl::FDivDuration(now - start, *duration),
                           absl::StrCat("slept ", absl::ToInt64Milliseconds(now - start), " of ",
                                        absl::ToInt64Milliseconds(*duration), " ms"));
    absl::SleepFor(std::min(end - now, absl::Milliseconds(5)));
  }
  return std::string();
}

absl::StatusOr<std::string> Spin(const TaskContext& context, absl::string_view input) {
  absl::StatusOr<absl::Duration> duration = ParseMilliseconds(input);
  if (!duration.ok()) return duration.status();
  const absl::Time start = absl::Now();
  const absl::Time end = start + *duration;
  uint64_t rounds = 0;
  while (absl::Now() < end) {
    if (context.cancelled()) return Interrupted("spin", start);
    ++rounds;
  }
  return absl::StrCat(rounds);
}

absl::StatusOr<std::string> Fail(const TaskContext&, absl::string_view input) {
  return absl::UnknownError(input);
}

// The next three let users and tests see (and, as an initializer, shape) a worker's environment.
absl::StatusOr<std::string> GetEnv(const TaskContext&, absl::string_view input) {
  const char* value = std::getenv(std::string(input).c_str());
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat("no environment variable ", input.substr(0, 128)));
  }
  return std::string(value);
}

absl::StatusOr<std::string> SetEnv(const TaskContext&, absl::string_view input) {
  const size_t equals = input.find('=');
  if (equals == 0 || equals == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected NAME=VALUE, got '", input.substr(0, 128), "'"));
  }
  const std::string name(input.substr(0, equals));
  if (setenv(name.c_str(), std::string(input.substr(equals + 1)).c_str(), 1) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("setenv ", name, ": ", std::strerror(errno)));
  }
  return std::string();
}

absl::StatusOr<std::string> GetCwd(const TaskContext&, absl::string_view) {
  char path[PATH_MAX];
  if (getcwd(path, sizeof(path)) == nullptr) {
    return absl::InternalError(absl::StrCat("getcwd: ", std::strerror(errno)));
  }
  return std::string(path);
}

}  // namespace

absl::Status RegisterBuiltins(FunctionRegistry& registry) {
  TaskDefinition builtins[] = {
      {"echo", "Returns its input unchanged.", "", "", Echo},
      {"sleep",
       "Sleeps for the milliseconds its input gives (ASCII decimal), reporting progress; stops "
       "early if interrupted.",
       "", "", Sleep},
      {"spin", "Keeps a core busy for the milliseconds its input gives (ASCII decimal).", "", "",
       Spin},
      {"fail", "Fails with status UNKNOWN and its input as the message.", "", "", Fail},
      {"getenv", "Returns the worker's value of the environment variable its input names.", "", "",
       GetEnv},
      {"setenv", "Sets NAME=VALUE (its input) in the worker's environment, e.g. as initializer.",
       "", "", SetEnv},
      {"getcwd", "Returns the worker's working directory.", "", "", GetCwd},
  };
  for (TaskDefinition& builtin : builtins) {
    if (absl::Status status = registry.Add(std::move(builtin)); !status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace mpigate::worker
