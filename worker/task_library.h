// Task libraries: shared objects that add users' own functions to a worker's registry, loaded
// once at worker start (mpigate-server --task-lib NAME, searched for in --task-lib-path).
//
// A task library is written against worker/task.h, which defines its C entry point:
//
//   extern "C" int mpigate_register_tasks(mpigate::TaskRegistry* registry, int api_version);
//
// Loading fails, naming the library, if it cannot be found or loaded, lacks the entry point, was
// built against another version of the task API, or registers a name that is invalid or already
// taken (the message then names the function too).
//
// Thread-safety: call before the worker loop starts, from one thread.
#ifndef MPIGATE_WORKER_TASK_LIBRARY_H_
#define MPIGATE_WORKER_TASK_LIBRARY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/registry.h"

namespace mpigate::worker {

// The entry point's name and type.
inline constexpr char kRegisterTasksSymbol[] = "mpigate_register_tasks";
using RegisterTasksFunction = int (*)(TaskRegistry*, int api_version);

// Where `name` is: itself if it holds a '/', else the first directory of `search_path` that has
// it. NOT_FOUND, listing the directories searched, otherwise.
absl::StatusOr<std::string> FindTaskLibrary(absl::string_view name,
                                            const std::vector<std::string>& search_path);

// Loads each library in order and adds its functions to `registry`. The libraries stay loaded
// for the life of the process.
absl::Status LoadTaskLibraries(const std::vector<std::string>& names,
                               const std::vector<std::string>& search_path,
                               FunctionRegistry& registry);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_LIBRARY_H_
