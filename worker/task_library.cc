#include "worker/task_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mpigate::worker {

absl::StatusOr<std::string> FindTaskLibrary(absl::string_view name,
                                            const std::vector<std::string>& search_path) {
  if (name.find('/') != absl::string_view::npos) return std::string(name);
  for (const std::string& directory : search_path) {
    std::string candidate = absl::StrCat(directory, "/", name);
    if (access(candidate.c_str(), R_OK) == 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("task library '", name, "' is in none of [",
                                          absl::StrJoin(search_path, ":"),
                                          "] (--task-lib-path, $MPIGATE_TASK_LIB_PATH)"));
}

absl::Status LoadTaskLibraries(const std::vector<std::string>& names,
                               const std::vector<std::string>& search_path,
                               FunctionRegistry& registry) {
  for (const std::string& name : names) {
    absl::StatusOr<std::string> path = FindTaskLibrary(name, search_path);
    if (!path.ok()) return path.status();
    // RTLD_LOCAL: two libraries may use the same internal symbol names without clashing.
    void* handle = dlopen(path->c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load task library ", *path, ": ", dlerror()));
    }
    const auto register_tasks =
        reinterpret_cast<RegisterTasksFunction>(dlsym(handle, kRegisterTasksSymbol));
    if (register_tasks == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("task library ", *path, " has no ", kRegisterTasksSymbol, " entry point"));
    }
    // Into a registry of its own first, so that a clash names both the library and the function.
    FunctionRegistry own;
    if (const int rc = register_tasks(&own); rc != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task library ", *path, ": ", kRegisterTasksSymbol, " failed with code ", rc));
    }
    for (const auto& [function, entry] : own.entries()) {
      if (registry.Find(function) != nullptr) {
        return absl::AlreadyExistsError(absl::StrCat("task library ", *path, " registers '",
                                                     function, "', a name already taken"));
      }
      if (absl::Status status = registry.Register(function, entry.description, entry.function);
          !status.ok()) {
        return status;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mpigate::worker
