// FunctionRegistry: the named functions a worker can run: its built-ins and those of its task
// libraries (see worker/task.h for how a function is written).
//
// Thread-safety: fill the registry before the worker loop starts; after that it is read-only and
// may be read from any thread.
#ifndef MPIGATE_WORKER_REGISTRY_H_
#define MPIGATE_WORKER_REGISTRY_H_

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "worker/task.h"

namespace mpigate::worker {

using ::mpigate::TaskContext;
using ::mpigate::TaskDefinition;
using ::mpigate::TaskFunction;

class FunctionRegistry final : public TaskRegistry {
 public:
  FunctionRegistry() = default;
  FunctionRegistry(const FunctionRegistry&) = delete;
  FunctionRegistry& operator=(const FunctionRegistry&) = delete;

  // INVALID_ARGUMENT for an empty name, or unless exactly one of `function` and `gang_function`
  // is set; ALREADY_EXISTS if the name is taken.
  absl::Status Add(TaskDefinition definition) override;

  // The definition registered under `name`, or null. The pointer stays valid for the registry's
  // life.
  const TaskDefinition* Find(absl::string_view name) const;

  // All definitions, sorted by name.
  const std::map<std::string, TaskDefinition, std::less<>>& definitions() const {
    return definitions_;
  }

 private:
  std::map<std::string, TaskDefinition, std::less<>> definitions_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_REGISTRY_H_
