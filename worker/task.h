// The mpigate task API: what a task library includes to give the pool functions of its own.
//
//   #include "worker/task.h"
//
//   // Bytes in, bytes or an error status out.
//   absl::StatusOr<std::string> Reverse(const mpigate::TaskContext&, absl::string_view input) {
//     return std::string(input.rbegin(), input.rend());
//   }
//   MPIGATE_TASK("mylib.reverse", "Returns its input reversed.", Reverse);
//
//   // Typed: a Protobuf request in, a Protobuf response out. The pool lists both types, and the
//   // client's typed helpers (client/typed.h) submit and decode them.
//   absl::StatusOr<PiResponse> EstimatePi(const mpigate::TaskContext& context,
//                                         const PiRequest& request);
//   MPIGATE_TASK("mylib.pi", "Monte Carlo estimate of pi.", EstimatePi);
//
// Build the library as a shared object (a Bazel cc_binary with linkshared = True depending on
// //worker:task, or `g++ -shared -fPIC`) and start the service with --task-lib. This header is the
// whole API: a library links no mpigate code, only Abseil and Protobuf, which the worker provides.
//
// A function runs in its worker's task runner process (or, with mpigate-server --isolation=none,
// on a thread of the worker itself), one task at a time per worker. It may throw: an escaping C++
// exception fails the task with its type and message and never harms the worker. If it crashes
// the runner, only its task fails (ABORTED), and the worker starts a fresh runner.
// Long loops should poll context.cancelled() and may call context.ReportProgress().
//
// Each MPIGATE_TASK adds to a list private to the shared object it is compiled into; when a worker
// loads the library it calls the entry point this header defines, mpigate_register_tasks, which
// hands the list to the worker. Names must be unique across the pool's libraries and built-ins
// (prefix them with the library's name); a clash fails the service's start, naming both.
//
// Thread-safety: registration happens while the library loads. A TaskContext belongs to one call
// of a function and may be used only during that call, from any thread it starts.
#ifndef MPIGATE_WORKER_TASK_H_
#define MPIGATE_WORKER_TASK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace mpigate {

// Bumped whenever a type below changes layout; a library built against another version is
// refused at load instead of crashing.
inline constexpr int kTaskApiVersion = 2;

// The seed of item `index` of a seeded range map (v1.RangeSpec) whose base seed is `base_seed`:
// SplitMix64 of both, so neighbouring items get unrelated seeds and an item's seed does not depend
// on how the range was split into batches. Public so that a run can be reproduced anywhere.
inline constexpr uint64_t ItemSeed(uint64_t base_seed, uint64_t index) {
  uint64_t z = base_seed + (index + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Where a task's progress reports go; the worker provides it.
class ProgressSink {
 public:
  virtual void Report(double fraction, absl::string_view message) = 0;

 protected:
  ~ProgressSink() = default;
};

// What a running task may know of, and tell, the worker it runs on.
class TaskContext {
 public:
  TaskContext(int rank, int pool_size, const std::atomic<bool>* cancelled = nullptr,
              ProgressSink* progress = nullptr)
      : rank_(rank), pool_size_(pool_size), cancelled_(cancelled), progress_(progress) {}

  // This worker's index in the pool, 0 .. pool_size() - 1.
  int rank() const { return rank_; }
  // The number of workers in the pool.
  int pool_size() const { return pool_size_; }

  // True once the client has asked to interrupt this task (or its result is no longer wanted).
  // Cheap enough to poll in an inner loop. A function that sees it should return soon, typically
  // absl::CancelledError(), which ends the task CANCELLED.
  bool cancelled() const {
    return cancelled_ != nullptr && cancelled_->load(std::memory_order_relaxed);
  }

  // Tells the client how far the task has got: `fraction` from 0 to 1 and a few words. Cheap:
  // only the latest report is kept, and the worker forwards it at most every 20 ms.
  void ReportProgress(double fraction, absl::string_view message = {}) const {
    if (progress_ != nullptr) progress_->Report(fraction, message);
  }

  // In a seeded range map (v1.RangeSpec), the index of the item this call computes and its seed,
  // ItemSeed(base_seed, index); both 0 in any other task.
  uint64_t item_index() const { return item_index_; }
  uint64_t item_seed() const { return item_seed_; }

  // This context for item `index` of a range map; the worker makes one per item.
  TaskContext ForItem(uint64_t index, uint64_t seed) const {
    TaskContext context = *this;
    context.item_index_ = index;
    context.item_seed_ = seed;
    return context;
  }

 private:
  int rank_;
  int pool_size_;
  const std::atomic<bool>* cancelled_;
  ProgressSink* progress_;
  uint64_t item_index_ = 0;
  uint64_t item_seed_ = 0;
};

// Defined in worker/gang.h, which needs MPI; only gang functions use it.
class GangContext;

// A function of raw bytes: the task's input in, its result out.
using TaskFunction =
    std::function<absl::StatusOr<std::string>(const TaskContext&, absl::string_view input)>;

// A gang function (worker/gang.h): called on every worker of a gang at once, with a communicator
// of their own.
using GangFunction =
    std::function<absl::StatusOr<std::string>(const GangContext&, absl::string_view input)>;

// One registered function.
struct TaskDefinition {
  // What tasks name it by, e.g. "mylib.reverse".
  std::string name;
  // One line: what it does, what its input and result are.
  std::string description;
  // For a typed function, the full names of its Protobuf request and response; else empty.
  std::string request_type;
  std::string response_type;
  // Exactly one of the two is set.
  TaskFunction function;
  GangFunction gang_function;
};

namespace task_internal {

// Wraps a typed function into one of bytes: the input is parsed as a `Request` (INVALID_ARGUMENT
// if it is not one) and the `Response` serialized. `Context` is TaskContext or GangContext.
template <typename Context, typename Request, typename Response>
std::function<absl::StatusOr<std::string>(const Context&, absl::string_view)> TypedCall(
    std::string name,
    std::function<absl::StatusOr<Response>(const Context&, const Request&)> function) {
  static_assert(std::is_base_of_v<google::protobuf::Message, Request> &&
                    std::is_base_of_v<google::protobuf::Message, Response>,
                "a typed task takes and returns Protobuf messages");
  return [name = std::move(name), function = std::move(function)](
             const Context& context, absl::string_view input) -> absl::StatusOr<std::string> {
    Request request;
    if (!request.ParseFromArray(input.data(), static_cast<int>(input.size()))) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": the input is not a valid ", Request::descriptor()->full_name()));
    }
    absl::StatusOr<Response> response = function(context, request);
    if (!response.ok()) return response.status();
    return response->SerializeAsString();
  };
}

}  // namespace task_internal

// A definition for a typed function: the input is parsed as a `Request` (INVALID_ARGUMENT if it
// is not one) and the `Response` serialized.
template <typename Request, typename Response>
TaskDefinition TypedTask(
    std::string name, std::string description,
    std::function<absl::StatusOr<Response>(const TaskContext&, const Request&)> function) {
  TaskDefinition definition;
  definition.request_type = Request::descriptor()->full_name();
  definition.response_type = Response::descriptor()->full_name();
  definition.function = task_internal::TypedCall<TaskContext, Request, Response>(
      name, std::move(function));
  definition.name = std::move(name);
  definition.description = std::move(description);
  return definition;
}

// Where definitions go; the worker implements it.
class TaskRegistry {
 public:
  // INVALID_ARGUMENT for an empty name, or unless exactly one of `function` and `gang_function`
  // is set; ALREADY_EXISTS if the name is taken.
  virtual absl::Status Add(TaskDefinition definition) = 0;

 protected:
  ~TaskRegistry() = default;
};

namespace task_internal {

// The definitions of the shared object this is compiled into. Hidden visibility gives each shared
// object its own list, even when the worker loads several with the same inline functions.
__attribute__((visibility("hidden"))) inline std::vector<TaskDefinition>& LibraryTasks() {
  static std::vector<TaskDefinition> tasks;
  return tasks;
}

}  // namespace task_internal

// Adds a function to this library's list when the library loads; MPIGATE_TASK makes one.
class TaskRegistrar {
 public:
  // Bytes in, bytes out: any callable of that signature.
  template <typename Function,
            typename = std::enable_if_t<std::is_invocable_r_v<
                absl::StatusOr<std::string>, Function, const TaskContext&, absl::string_view>>>
  TaskRegistrar(std::string name, std::string description, Function function) {
    task_internal::LibraryTasks().push_back(
        {std::move(name), std::move(description), "", "", TaskFunction(std::move(function))});
  }

  // Typed: a function taking a Protobuf request and returning a Protobuf response.
  template <typename Request, typename Response>
  TaskRegistrar(std::string name, std::string description,
                absl::StatusOr<Response> (*function)(const TaskContext&, const Request&)) {
    task_internal::LibraryTasks().push_back(
        TypedTask<Request, Response>(std::move(name), std::move(description), function));
  }
};

}  // namespace mpigate

#define MPIGATE_TASK_CONCAT_INNER(a, b) a##b
#define MPIGATE_TASK_CONCAT(a, b) MPIGATE_TASK_CONCAT_INNER(a, b)

// Registers `function` under `name` (a string) with a one-line `description`. At namespace scope,
// in any number of the library's source files.
#define MPIGATE_TASK(name, description, function)                                                  \
  static const ::mpigate::TaskRegistrar MPIGATE_TASK_CONCAT(mpigate_task_registrar_, __COUNTER__)( \
      name, description, function)

// The entry point a worker calls once after loading the library: hands over every MPIGATE_TASK of
// the library. Returns 0 when all were added, 1 if the worker refused one (it knows why), 2 if the
// worker speaks another version of this API. Defined here, once per library however many files
// include this header (inline), and kept and exported although nothing in the library calls it.
extern "C" __attribute__((used, visibility("default"))) inline int mpigate_register_tasks(
    mpigate::TaskRegistry* registry, int api_version) {
  if (api_version != mpigate::kTaskApiVersion) return 2;
  for (const mpigate::TaskDefinition& definition : mpigate::task_internal::LibraryTasks()) {
    if (!registry->Add(definition).ok()) return 1;
  }
  return 0;
}

#endif  // MPIGATE_WORKER_TASK_H_
