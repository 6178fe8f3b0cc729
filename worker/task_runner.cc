#include "worker/task_runner.h"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace mpigate::worker {
namespace {

std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

void SetError(const absl::Status& status, wire::ErrorInfo& error) {
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
}

// Calls `function` on one input and records the outcome in `result` or `error`.
void CallOnce(const TaskFunction& function, const TaskContext& context, absl::string_view input,
              std::string& result, wire::ErrorInfo& error, bool& failed) {
  failed = true;
  try {
    absl::StatusOr<std::string> output = function(context, input);
    if (output.ok()) {
      result = *std::move(output);
      failed = false;
    } else {
      SetError(output.status(), error);
    }
  } catch (const std::exception& e) {
    error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
    error.set_message(e.what());
    error.set_exception_type(Demangle(typeid(e).name()));
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
    error.set_message("task threw a non-standard exception");
    error.set_exception_type(type ? Demangle(type->name()) : "unknown");
  }
}

}  // namespace

wire::ResultFrame RunTask(const FunctionRegistry& registry, const TaskContext& context,
                          const wire::TaskFrame& task) {
  wire::ResultFrame result;
  result.set_task_key(task.task_key());
  const TaskDefinition* definition = registry.Find(task.function());
  if (definition == nullptr) {
    SetError(absl::NotFoundError(
                 absl::StrCat("no task function named '", task.function(), "' on this worker")),
             *result.mutable_error());
    return result;
  }

  const absl::Time start = absl::Now();
  bool failed = false;
  if (task.items_size() == 0) {
    std::string output;
    wire::ErrorInfo error;
    CallOnce(definition->function, context, task.payload(), output, error, failed);
    if (failed) {
      *result.mutable_error() = std::move(error);
    } else {
      result.set_result(std::move(output));
    }
  } else {
    for (const std::string& item : task.items()) {
      wire::ItemResult& item_result = *result.add_items();
      std::string output;
      wire::ErrorInfo error;
      CallOnce(definition->function, context, item, output, error, failed);
      if (failed) {
        *item_result.mutable_error() = std::move(error);
      } else {
        item_result.set_result(std::move(output));
      }
    }
  }
  result.set_run_us(static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start)));
  return result;
}

}  // namespace mpigate::worker
