#include "server/task_intake.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/shared_memory.h"

namespace mpigate::server {
namespace {

// The most items one range task may compute. A range costs the client a few bytes whatever its
// size, but the worker holds every item's result until the batch ends: this bounds that.
constexpr uint64_t kMaxRangeCount = uint64_t{1} << 20;

// The most retries a task may ask for: a function that crashes its runner ten times in a row will
// not stop crashing, and each attempt holds a worker.
constexpr uint32_t kMaxRetries = 10;

// The most bytes of environment variables one session may set for its tasks (OpenSession.env):
// each of its task frames carries them.
constexpr size_t kMaxEnvBytes = 64 << 10;

// OpenSession.env as each task frame carries it ("NAME=VALUE", sorted by name), or why it is
// malformed.
absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> EnvVariables(
    const google::protobuf::Map<std::string, std::string>& env) {
  std::vector<std::pair<absl::string_view, absl::string_view>> sorted(env.begin(), env.end());
  std::sort(sorted.begin(), sorted.end());
  google::protobuf::RepeatedPtrField<std::string> variables;
  size_t bytes = 0;
  for (const auto& [name, value] : sorted) {
    if (name.empty() ||
        name.find_first_of(absl::string_view("=\0", 2)) != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env: '", absl::CHexEscape(name.substr(0, 128)),
          "' is not an environment variable name (it must be non-empty, without '=' or NUL)"));
    }
    if (value.find('\0') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("env: the value of ", name.substr(0, 128), " holds a NUL byte"));
    }
    bytes += name.size() + value.size() + 2;
    if (bytes > kMaxEnvBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("env: more than ", kMaxEnvBytes,
                       " bytes of environment variables; pass large values "
                       "as task input instead"));
    }
    variables.Add(absl::StrCat(name, "=", value));
  }
  return variables;
}

}  // namespace

TaskIntake::TaskIntake(Options options)
    : workers_(options.workers),
      refused_functions_(std::move(options.refused_functions)),
      max_queued_tasks_per_session_(options.max_queued_tasks_per_session),
      max_unread_result_bytes_(options.max_unread_result_bytes),
      task_environments_(options.task_environments),
      shared_memory_prefix_(std::move(options.shared_memory_prefix)) {}

absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> TaskIntake::SessionEnv(
    const google::protobuf::Map<std::string, std::string>& env) const {
  if (!env.empty() && !task_environments_) {
    return absl::FailedPreconditionError(
        "env: this pool runs tasks inside its worker processes (--isolation=none), whose one "
        "environment every task shares; it cannot give a session's tasks variables of their own");
  }
  return EnvVariables(env);
}

void TaskIntake::SetFunctions(std::vector<v1::FunctionInfo> functions, TaskMetrics& metrics) {
  functions_ = std::move(functions);
  for (const v1::FunctionInfo& function : functions_) {
    FunctionTraits& traits = traits_[function.name()];
    traits.request_type = function.request_type();
    traits.gang = function.gang();
    traits.metrics = &metrics.AddFunction(function.name());
  }
}

absl::StatusOr<const TaskIntake::FunctionTraits*> TaskIntake::Validate(
    v1::PoolState state, absl::string_view reason, const Session& session, const v1::TaskSpec& spec,
    uint64_t reserve_bytes) const {
  if (state == v1::POOL_STATE_DRAINING) {
    return absl::UnavailableError(absl::StrCat("the service is draining: ", reason));
  }
  if (state == v1::POOL_STATE_BROKEN) {
    return absl::FailedPreconditionError(absl::StrCat("BrokenExecutor: ", reason));
  }
  if (session.shut_down) {
    return absl::FailedPreconditionError("cannot submit after the session was shut down");
  }
  if (spec.task_id() == 0) return absl::InvalidArgumentError("task_id must be non-zero");
  if (spec.function().empty()) return absl::InvalidArgumentError("task has no function name");
  if (const auto refused = refused_functions_.find(spec.function());
      refused != refused_functions_.end()) {
    return absl::PermissionDeniedError(refused->second);
  }
  if (absl::Status status = CheckShape(spec); !status.ok()) return status;
  if (session.max_running > 0 && spec.options().gang_size() > session.max_running) {
    // It would wait for room its session never has.
    return absl::InvalidArgumentError(absl::StrCat(
        "gang_size ", spec.options().gang_size(), " is more than the session's max_running_tasks (",
        session.max_running, "): a gang counts one task per member"));
  }
  if (absl::Status status = CheckSharedPayload(session, spec); !status.ok()) return status;
  // While booting the functions are not known yet; PoolReady() checks the queued tasks.
  const FunctionTraits* traits = nullptr;
  if (state == v1::POOL_STATE_READY) {
    absl::StatusOr<const FunctionTraits*> checked =
        CheckFunction(spec.function(), spec.payload_type(), spec.options().gang_size(),
                      spec.items_size() > 0 || spec.has_range());
    if (!checked.ok()) return checked.status();
    traits = *checked;
  }
  if (session.Holds(spec.task_id())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "task_id ", spec.task_id(),
        " is already in use in this session (by a task not ended, or one whose outcome is not "
        "acknowledged)"));
  }
  if (max_queued_tasks_per_session_ > 0 && session.queued >= max_queued_tasks_per_session_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the session already has its maximum of ", max_queued_tasks_per_session_,
        " queued tasks (--max_queued_tasks_per_session); submit more as these start, or raise "
        "the limit"));
  }
  // Every accepted task has room for the failure it may end as, so that no outcome, failures
  // included, can take the session past the bound: a client that does not read is refused here,
  // where refusing costs nothing the session keeps.
  if (max_unread_result_bytes_ > 0 &&
      session.unread_bytes + session.reserved_bytes + reserve_bytes > max_unread_result_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the session holds ", session.unread_bytes,
        " bytes of outcomes its client has not read or acknowledged, and ", session.reserved_bytes,
        " bytes reserved for the outcomes of its ", session.live.size(),
        " unfinished tasks: another task would take it past the server's limit of ",
        max_unread_result_bytes_,
        " bytes (--max_unread_result_mb); read and acknowledge results sooner, or raise "
        "--max_unread_result_mb"));
  }
  return traits;
}

absl::Status TaskIntake::CheckSharedPayload(const Session& session,
                                            const v1::TaskSpec& spec) const {
  if (!spec.has_shared_payload()) return absl::OkStatus();
  if (!session.shared.enabled) {
    return absl::InvalidArgumentError(
        "shared_payload needs a session with shared memory (SessionOpened.shared_memory_prefix: "
        "the client must share the service's host and user, and say so in "
        "OpenSession.shared_memory_domain)");
  }
  if (!IsSharedObjectName(spec.shared_payload().name(), shared_memory_prefix_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared_payload.name '", spec.shared_payload().name().substr(0, 128),
                     "' is not a name of this service's objects: '", shared_memory_prefix_,
                     "' and 16 lowercase hex digits"));
  }
  if (!spec.payload().empty() || spec.items_size() > 0) {
    return absl::InvalidArgumentError("a task with a shared_payload takes no payload and no items");
  }
  return absl::OkStatus();
}

bool TaskIntake::HandsOverSharedPayload(const Session& session, const v1::TaskSpec& spec) const {
  return session.shared.enabled && spec.has_shared_payload() &&
         IsSharedObjectName(spec.shared_payload().name(), shared_memory_prefix_);
}

absl::Status TaskIntake::CheckShape(const v1::TaskSpec& spec) const {
  const uint32_t gang_size = spec.options().gang_size();
  if (gang_size > static_cast<uint32_t>(workers_)) {
    return absl::InvalidArgumentError(absl::StrCat("gang_size ", gang_size, " is more than the ",
                                                   workers_, " workers of the pool"));
  }
  if (spec.options().broadcast()) {
    if (spec.items_size() > 0) {
      return absl::InvalidArgumentError(
          "a broadcast cannot have items: it calls the function once on every worker");
    }
    if (spec.has_range()) {
      return absl::InvalidArgumentError(
          "a broadcast cannot have a range: it calls the function once on every worker");
    }
    if (gang_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a broadcast cannot have a gang_size (", gang_size,
          "): it runs on every worker, and a gang function broadcast runs as a gang of them all"));
    }
  }
  if (spec.options().max_retries() > kMaxRetries) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_retries ", spec.options().max_retries(), " is more than ", kMaxRetries));
  }
  if (spec.options().broadcast() && spec.options().max_retries() > 0) {
    return absl::InvalidArgumentError(
        "a broadcast cannot have max_retries: each worker's crash is reported in its own item");
  }
  if (gang_size > 1 && (spec.items_size() > 0 || spec.has_range())) {
    return absl::InvalidArgumentError(
        absl::StrCat("a gang (gang_size ", gang_size, ") takes one payload, not items or a range"));
  }
  if (spec.has_range()) {
    if (spec.items_size() > 0) {
      return absl::InvalidArgumentError("a task cannot have both items and a range");
    }
    if (spec.range().count() == 0) {
      return absl::InvalidArgumentError("range.count must be at least 1");
    }
    if (spec.range().count() > kMaxRangeCount) {
      return absl::InvalidArgumentError(
          absl::StrCat("range.count ", spec.range().count(), " is more than the ", kMaxRangeCount,
                       " items one task may compute: split the range into batches"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const TaskIntake::FunctionTraits*> TaskIntake::CheckFunction(
    absl::string_view function, absl::string_view payload_type, uint32_t gang_size,
    bool several_inputs) const {
  const auto it = traits_.find(function);
  if (it == traits_.end()) {
    return absl::NotFoundError(absl::StrCat("no function named '", function.substr(0, 128),
                                            "' is registered on the workers"));
  }
  const FunctionTraits& traits = it->second;
  const std::string& request_type = traits.request_type;
  if (!payload_type.empty() && !request_type.empty() && payload_type != request_type) {
    return absl::InvalidArgumentError(absl::StrCat("function '", function, "' takes ", request_type,
                                                   ", not ", payload_type.substr(0, 128)));
  }
  if (traits.gang && several_inputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("function '", function,
                     "' is a gang function: it takes one payload, not items or a range"));
  }
  if (!traits.gang && gang_size > 1) {
    return absl::InvalidArgumentError(absl::StrCat("function '", function,
                                                   "' is not a gang function: it cannot run on ",
                                                   gang_size, " workers at once"));
  }
  return &traits;
}

void TaskIntake::ToFrame(uint64_t key, const Session& session, v1::TaskSpec& spec,
                         wire::TaskFrame& frame) {
  frame.set_task_key(key);
  frame.set_run_timeout_ms(spec.options().run_timeout_ms());
  frame.set_max_result_bytes(session.max_outcome_bytes);
  frame.set_function(spec.function());
  frame.set_payload(std::move(*spec.mutable_payload()));
  if (!session.env.empty()) *frame.mutable_env() = session.env;
  if (spec.has_shared_payload()) {
    frame.mutable_shared_payload()->set_name(
        std::move(*spec.mutable_shared_payload()->mutable_name()));
    frame.mutable_shared_payload()->set_size(spec.shared_payload().size());
  }
  frame.mutable_items()->Swap(spec.mutable_items());
  if (spec.has_range()) {
    wire::RangeBatch& range = *frame.mutable_range();
    range.set_first(spec.range().first());
    range.set_count(spec.range().count());
    range.set_base_seed(spec.range().base_seed());
  }
}

}  // namespace mpigate::server
