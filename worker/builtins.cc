#include "worker/builtins.h"

#include <string>

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

absl::StatusOr<std::string> Sleep(const TaskContext&, absl::string_view input) {
  absl::StatusOr<absl::Duration> duration = ParseMilliseconds(input);
  if (!duration.ok()) return duration.status();
  absl::SleepFor(*duration);
  return std::string();
}

absl::StatusOr<std::string> Spin(const TaskContext&, absl::string_view input) {
  absl::StatusOr<absl::Duration> duration = ParseMilliseconds(input);
  if (!duration.ok()) return duration.status();
  const absl::Time end = absl::Now() + *duration;
  uint64_t rounds = 0;
  while (absl::Now() < end) ++rounds;
  return absl::StrCat(rounds);
}

absl::StatusOr<std::string> Fail(const TaskContext&, absl::string_view input) {
  return absl::UnknownError(input);
}

}  // namespace

absl::Status RegisterBuiltins(FunctionRegistry& registry) {
  struct Builtin {
    const char* name;
    const char* description;
    TaskFunction function;
  };
  const Builtin builtins[] = {
      {"echo", "Returns its input unchanged.", Echo},
      {"sleep", "Sleeps for the milliseconds its input gives (ASCII decimal); returns nothing.",
       Sleep},
      {"spin", "Keeps a core busy for the milliseconds its input gives (ASCII decimal).", Spin},
      {"fail", "Fails with status UNKNOWN and its input as the message.", Fail},
  };
  for (const Builtin& builtin : builtins) {
    if (absl::Status status =
            registry.Register(builtin.name, builtin.description, builtin.function);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace mpigate::worker
