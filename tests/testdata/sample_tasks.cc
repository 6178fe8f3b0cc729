// A task library for tests: the smallest real one, loaded by workers at start.
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/task.h"

namespace {

absl::StatusOr<std::string> Greet(const mpigate::TaskContext& context, absl::string_view input) {
  return absl::StrCat("hello, ", input, " from worker ", context.rank());
}

}  // namespace

MPIGATE_TASK("sample.greet", "Returns 'hello, <input>' and the worker's index.", Greet);
