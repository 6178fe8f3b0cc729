#include "worker/task_runner.h"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/shared_memory.h"
#include "google/protobuf/io/coded_stream.h"
#include "wire/wire_error.h"

namespace mpigate::worker {
namespace {

std::string Demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

// Makes one call of a function and records its outcome in `outcome`: a ResultFrame or an
// ItemResult, which both hold a result or an error.
template <typename Outcome>
void Call(absl::FunctionRef<absl::StatusOr<std::string>()> call, Outcome& outcome) {
  try {
    absl::StatusOr<std::string> output = call();
    if (output.ok()) {
      outcome.set_result(*std::move(output));
    } else {
      wire::SetError(output.status(), *outcome.mutable_error());
    }
  } catch (const std::exception& e) {
    wire::ErrorInfo& error = *outcome.mutable_error();
    error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
    error.set_message(e.what());
    error.set_exception_type(Demangle(typeid(e).name()));
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    wire::ErrorInfo& error = *outcome.mutable_error();
    error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
    error.set_message("task threw a non-standard exception");
    error.set_exception_type(type ? Demangle(type->name()) : "unknown");
  }
}

// Moves a single call's result into a shared memory object when the frame asks for that and it
// is large enough; keeps it in the frame when the object cannot be made (/dev/shm full).
void ShareResult(const wire::TaskFrame& task, wire::ResultFrame& result) {
  if (task.shared_result_prefix().empty() || !result.has_result() ||
      result.result().size() < task.shared_result_min_bytes()) {
    return;
  }
  absl::StatusOr<std::string> name =
      CreateSharedObject(task.shared_result_prefix(), result.result());
  if (!name.ok()) return;
  result.mutable_shared_result()->set_size(result.result().size());
  result.mutable_shared_result()->set_name(*std::move(name));
  result.clear_result();
}

// Keeps a task's result within TaskFrame.max_result_bytes as its items come.
class ResultBudget {
 public:
  explicit ResultBudget(const wire::TaskFrame& task) : limit_(task.max_result_bytes()) {}

  // Counts the item just added to `result` (items `done` of `total`); if that takes the result
  // past the limit, turns it into a RESOURCE_EXHAUSTED failure, freeing what it held, and
  // returns false.
  bool Add(wire::ResultFrame& result, uint64_t done, uint64_t total) {
    if (limit_ == 0) return true;
    const size_t item = result.items(result.items_size() - 1).ByteSizeLong();
    // The field's tag (one byte) and length, then the item.
    bytes_ += 1 + google::protobuf::io::CodedOutputStream::VarintSize64(item) + item;
    if (bytes_ <= limit_) return true;
    Fail(absl::StrCat("the result grew past ", limit_, " bytes at item ", done, " of ", total),
         result);
    return false;
  }

  // The same for a whole result, as it will travel (a result in shared memory does not count).
  // A failure stays as it is: its message is what the caller needs to see, and the gateway still
  // bounds what it forwards.
  void Check(wire::ResultFrame& result) const {
    if (limit_ == 0 || result.has_error()) return;
    const size_t size = result.ByteSizeLong();
    if (size <= limit_) return;
    Fail(absl::StrCat("the result of ", size, " bytes is larger than ", limit_, " bytes"), result);
  }

 private:
  void Fail(absl::string_view what, wire::ResultFrame& result) const {
    wire::ResultFrame failed;
    failed.set_task_key(result.task_key());
    failed.set_run_us(result.run_us());
    wire::SetError(absl::ResourceExhaustedError(absl::StrCat(
                       what, ", the largest outcome its session's stream carries (", limit_,
                       " bytes: the service's --max_message_mb or the client's max_message_bytes, "
                       "whichever is smaller, less framing); raise both, return less, or split the "
                       "task into smaller chunks or batches")),
                   *failed.mutable_error());
    // What the result held goes with `failed`.
    result = std::move(failed);
  }

  const uint64_t limit_;
  uint64_t bytes_ = 0;
};

// Looks up the function `task` names and, if it is of the kind the caller runs (a gang function
// or not), runs `calls` with it and its input (the payload, or the shared memory object that
// holds it) and times them. Otherwise the result says why not.
wire::ResultFrame Run(
    const FunctionRegistry& registry, const wire::TaskFrame& task, bool gang,
    absl::FunctionRef<void(const TaskDefinition&, absl::string_view, wire::ResultFrame&)> calls) {
  wire::ResultFrame result;
  result.set_task_key(task.task_key());
  const TaskDefinition* definition = registry.Find(task.function());
  absl::Status refused;
  if (definition == nullptr) {
    refused = absl::NotFoundError(
        absl::StrCat("no task function named '", task.function(), "' on this worker"));
  } else if (gang && !definition->gang_function) {
    refused = absl::FailedPreconditionError(absl::StrCat(
        "'", task.function(), "' is not a gang function: it runs on one worker, not as a gang"));
  } else if (!gang && !definition->function) {
    refused = absl::FailedPreconditionError(
        absl::StrCat("'", task.function(),
                     "' is a gang function: it runs only as a gang task (gang_size), with a "
                     "communicator of its own"));
  }
  std::optional<SharedMapping> shared_input;
  if (refused.ok() && task.has_shared_payload()) {
    absl::StatusOr<SharedMapping> mapped =
        SharedMapping::Map(task.shared_payload().name(), task.shared_payload().size());
    if (mapped.ok()) {
      shared_input = *std::move(mapped);
    } else {
      refused = mapped.status();
    }
  }
  if (!refused.ok()) {
    wire::SetError(refused, *result.mutable_error());
    return result;
  }
  const absl::string_view input =
      shared_input.has_value() ? shared_input->bytes() : absl::string_view(task.payload());
  const absl::Time start = absl::Now();
  calls(*definition, input, result);
  result.set_run_us(static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - start)));
  ShareResult(task, result);
  ResultBudget(task).Check(result);
  return result;
}

}  // namespace

wire::ResultFrame RunTask(const FunctionRegistry& registry, const TaskContext& context,
                          const wire::TaskFrame& task) {
  return Run(
      registry, task, /*gang=*/false,
      [&](const TaskDefinition& definition, absl::string_view input, wire::ResultFrame& result) {
        const TaskFunction& function = definition.function;
        // Items stop at the one that takes the result past its limit.
        ResultBudget budget(task);
        if (task.has_range()) {
          const wire::RangeBatch& range = task.range();
          for (uint64_t k = 0; k < range.count(); ++k) {
            const uint64_t i = range.first() + k;
            const TaskContext item = context.ForItem(i, ItemSeed(range.base_seed(), i));
            Call([&] { return function(item, input); }, *result.add_items());
            if (!budget.Add(result, k + 1, range.count())) return;
          }
        } else if (task.items_size() > 0) {
          const uint64_t total = static_cast<uint64_t>(task.items_size());
          uint64_t done = 0;
          for (const std::string& item : task.items()) {
            Call([&] { return function(context, item); }, *result.add_items());
            if (!budget.Add(result, ++done, total)) return;
          }
        } else {
          Call([&] { return function(context, input); }, result);
        }
      });
}

std::optional<wire::ErrorInfo> RunInitializer(const FunctionRegistry& registry,
                                              const TaskContext& context,
                                              const Initializer& initializer) {
  if (initializer.function.empty()) return std::nullopt;
  wire::TaskFrame init;
  init.set_function(initializer.function);
  init.set_payload(initializer.input);
  const wire::ResultFrame result = RunTask(registry, context, init);
  if (!result.has_error()) return std::nullopt;
  const wire::ErrorInfo& failure = result.error();
  wire::ErrorInfo error = failure;
  error.set_message(absl::StrCat("initializer '", initializer.function,
                                 "' failed: ", failure.exception_type(),
                                 failure.exception_type().empty() ? "" : ": ", failure.message()));
  return error;
}

wire::ResultFrame RunGangTask(const FunctionRegistry& registry, const GangContext& context,
                              const wire::TaskFrame& task) {
  return Run(
      registry, task, /*gang=*/true,
      [&](const TaskDefinition& definition, absl::string_view input, wire::ResultFrame& result) {
        Call([&] { return definition.gang_function(context, input); }, result);
      });
}

wire::ResultFrame DroppedBeforeStart(uint64_t task_key) {
  wire::ResultFrame result;
  result.set_task_key(task_key);
  result.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kCancelled));
  result.mutable_error()->set_message("cancelled before it started, in the worker's backlog");
  return result;
}

}  // namespace mpigate::worker
