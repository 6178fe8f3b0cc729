// FunctionRegistry: the named functions a worker can run.
//
// A task function takes the task's input bytes and returns output bytes or an error status. It may
// also throw; the task runner turns an escaping exception into an error (see task_runner.h).
//
// Thread-safety: fill the registry before the worker loop starts; after that it is read-only and
// may be read from any thread.
#ifndef MPIGATE_WORKER_REGISTRY_H_
#define MPIGATE_WORKER_REGISTRY_H_

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate::worker {

// What a running task may know about the worker it runs on.
struct TaskContext {
  // This worker's index in the pool, 0-based.
  int worker_index = 0;
  // The number of workers in the pool.
  int pool_size = 1;
};

using TaskFunction =
    std::function<absl::StatusOr<std::string>(const TaskContext&, absl::string_view input)>;

class FunctionRegistry {
 public:
  struct Entry {
    std::string description;
    TaskFunction function;
  };

  FunctionRegistry() = default;
  FunctionRegistry(const FunctionRegistry&) = delete;
  FunctionRegistry& operator=(const FunctionRegistry&) = delete;

  // Adds `function` under `name`. INVALID_ARGUMENT for an empty name or function; ALREADY_EXISTS
  // if the name is taken.
  absl::Status Register(absl::string_view name, absl::string_view description,
                        TaskFunction function);

  // The entry registered under `name`, or null. The pointer stays valid for the registry's life.
  const Entry* Find(absl::string_view name) const;

  // All entries, sorted by name.
  const std::map<std::string, Entry, std::less<>>& entries() const { return entries_; }

 private:
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_REGISTRY_H_
