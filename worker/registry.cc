#include "worker/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::worker {

absl::Status FunctionRegistry::Register(absl::string_view name, absl::string_view description,
                                        TaskFunction function) {
  if (name.empty()) return absl::InvalidArgumentError("a task function needs a name");
  if (!function) {
    return absl::InvalidArgumentError(absl::StrCat("task function '", name, "' is empty"));
  }
  const auto [it, inserted] =
      entries_.try_emplace(std::string(name), Entry{std::string(description), std::move(function)});
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("task function '", name, "' is already registered"));
  }
  return absl::OkStatus();
}

const FunctionRegistry::Entry* FunctionRegistry::Find(absl::string_view name) const {
  const auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

}  // namespace mpigate::worker
