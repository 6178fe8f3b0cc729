// A task library that registers a name the built-ins already use.
#include <string>

#include "worker/task.h"

namespace {

absl::StatusOr<std::string> Echo(const mpigate::TaskContext&, absl::string_view input) {
  return std::string(input);
}

}  // namespace

MPIGATE_TASK("echo", "A second echo, which the worker must refuse.", Echo);
