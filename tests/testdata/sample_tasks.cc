// A task library for tests: the smallest real one, loaded by workers at start.
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "worker/registry.h"

extern "C" int mpigate_register_tasks(mpigate::worker::FunctionRegistry* registry) {
  const absl::Status status = registry->Register(
      "sample.greet", "Returns 'hello, <input>' and the worker's index.",
      [](const mpigate::worker::TaskContext& context,
         absl::string_view input) -> absl::StatusOr<std::string> {
        return absl::StrCat("hello, ", input, " from worker ", context.worker_index);
      });
  return status.ok() ? 0 : 1;
}
