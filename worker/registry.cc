#include "worker/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::worker {

absl::Status FunctionRegistry::Add(TaskDefinition definition) {
  if (definition.name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a task function needs a name (description: '", definition.description, "')"));
  }
  if (!definition.function && !definition.gang_function) {
    return absl::InvalidArgumentError(
        absl::StrCat("task function '", definition.name, "' is empty"));
  }
  if (definition.function && definition.gang_function) {
    // Which one a task would call would depend on how it was submitted: refuse the ambiguity.
    return absl::InvalidArgumentError(
        absl::StrCat("task function '", definition.name, "' is both a plain and a gang function"));
  }
  std::string name = definition.name;
  const auto [it, inserted] = definitions_.try_emplace(std::move(name), std::move(definition));
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("task function '", it->first, "' is already registered"));
  }
  return absl::OkStatus();
}

const TaskDefinition* FunctionRegistry::Find(absl::string_view name) const {
  const auto it = definitions_.find(name);
  return it == definitions_.end() ? nullptr : &it->second;
}

}  // namespace mpigate::worker
