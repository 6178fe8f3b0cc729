#include "worker/task_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mpigate::worker {
namespace {

// What one library registers: checked against the worker's registry, and remembered with the
// reason for the first refusal, so that the error names the library and the function.
class LibraryRegistry final : public TaskRegistry {
 public:
  LibraryRegistry(const FunctionRegistry& taken, absl::string_view path)
      : taken_(taken), path_(path) {}

  absl::Status Add(TaskDefinition definition) override {
    absl::Status status;
    if (taken_.Find(definition.name) != nullptr) {
      status = absl::AlreadyExistsError(absl::StrCat("task library ", path_, " registers '",
                                                     definition.name, "', a name already taken"));
    } else if (absl::Status added = own_.Add(std::move(definition)); !added.ok()) {
      status =
          absl::Status(added.code(), absl::StrCat("task library ", path_, ": ", added.message()));
    }
    if (!status.ok() && first_error_.ok()) first_error_ = status;
    return status;
  }

  const absl::Status& first_error() const { return first_error_; }
  FunctionRegistry& own() { return own_; }

 private:
  const FunctionRegistry& taken_;
  const std::string path_;
  FunctionRegistry own_;
  absl::Status first_error_;
};

}  // namespace

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
      return absl::FailedPreconditionError(absl::StrCat(
          "task library ", *path, " has no ", kRegisterTasksSymbol,
          " entry point (does it include worker/task.h and register with MPIGATE_TASK?)"));
    }
    LibraryRegistry library(registry, *path);
    const int rc = register_tasks(&library, kTaskApiVersion);
    if (!library.first_error().ok()) return library.first_error();
    if (rc != 0) {
      return absl::FailedPreconditionError(
          rc == 2 ? absl::StrCat("task library ", *path,
                                 " was built against another version of the mpigate task API "
                                 "(this worker has version ",
                                 kTaskApiVersion, "); rebuild it against worker/task.h")
                  : absl::StrCat("task library ", *path, ": ", kRegisterTasksSymbol,
                                 " failed with code ", rc));
    }
    for (auto& [function, definition] : library.own().definitions()) {
      if (absl::Status status = registry.Add(definition); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace mpigate::worker
