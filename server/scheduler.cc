#include "server/scheduler.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/shared_memory.h"

namespace mpigate::server {
namespace {

uint64_t MicrosBetween(absl::Time from, absl::Time to) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(to - from)));
}

// The queue timeout a client asked for. absl::Milliseconds takes an int64_t, so a value above its
// range (e.g. UINT64_MAX for "no real limit") would wrap negative and expire the task at once.
absl::Duration QueueTimeout(uint64_t timeout_ms) {
  if (timeout_ms > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InfiniteDuration();
  }
  return absl::Milliseconds(static_cast<int64_t>(timeout_ms));
}

// The most items one range task may compute. A range costs the client a few bytes whatever its
// size, but the worker holds every item's result until the batch ends: this bounds that.
constexpr uint64_t kMaxRangeCount = uint64_t{1} << 20;

// The most retries a task may ask for: a function that crashes its runner ten times in a row will
// not stop crashing, and each attempt holds a worker.
constexpr uint32_t kMaxRetries = 10;

// Room for what a session's stream wraps around one outcome (SessionEvent.updates.outcomes: two
// field tags and lengths).
constexpr uint64_t kStreamFramingBytes = 64;

// The longest message of a failure the scheduler makes in place of an outcome it cannot hold or
// send (FailResourceExhausted): what every task reserves room for may not depend on its input.
constexpr size_t kMaxReplacementMessageBytes = 400;

// What holding one outcome costs the gateway beyond its encoded bytes: the message objects
// (TaskOutcome, TaskError), its entries in the session's `unread` map and outbox, and its id in
// `started`. Counted so that a session of many tiny outcomes is bounded by what it takes in memory,
// not by the few bytes each takes on the wire.
constexpr size_t kHeldOutcomeOverheadBytes = sizeof(v1::TaskOutcome) + sizeof(v1::TaskError) + 64;

// What the session holds for `outcome`: the message, its result in shared memory, and the
// bookkeeping around it.
size_t HeldBytes(const v1::TaskOutcome& outcome) {
  return outcome.ByteSizeLong() + outcome.shared_result().size() + kHeldOutcomeOverheadBytes;
}

// The most a failure made by FailResourceExhausted can hold (HeldBytes) for a task that runs on up
// to `members` workers: every field at its widest.
size_t ReplacementBytes(int members) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(std::numeric_limits<uint64_t>::max());
  outcome.set_state(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
  outcome.mutable_error()->set_message(std::string(kMaxReplacementMessageBytes, 'x'));
  outcome.set_worker(-1);
  outcome.set_queue_us(std::numeric_limits<uint64_t>::max());
  outcome.set_run_us(std::numeric_limits<uint64_t>::max());
  outcome.set_attempts(std::numeric_limits<uint32_t>::max());
  if (members > 1) {
    for (int i = 0; i < members; ++i) outcome.add_workers(std::numeric_limits<int32_t>::max());
  }
  return HeldBytes(outcome);
}

void SetError(absl::StatusCode code, absl::string_view message, v1::TaskError& error) {
  error.set_code(static_cast<int>(code));
  error.set_message(std::string(message));
}

// Turns an outcome the session cannot hold or send into a RESOURCE_EXHAUSTED failure. Keeps where
// and how long it ran; the failure fits in what its task reserved (ReplacementBytes).
void FailResourceExhausted(std::string message, v1::TaskOutcome& outcome) {
  outcome.clear_result();
  outcome.clear_items();
  outcome.set_state(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->Clear();
  if (message.size() > kMaxReplacementMessageBytes) message.resize(kMaxReplacementMessageBytes);
  SetError(absl::StatusCode::kResourceExhausted, message, *outcome.mutable_error());
}

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

void CopyError(wire::ErrorInfo& from, v1::TaskError& to) {
  to.set_code(from.code());
  to.set_message(std::move(*from.mutable_message()));
  to.set_exception_type(std::move(*from.mutable_exception_type()));
}

// Fills in what one worker's result says: state, result, items or error, and run time. Moves the
// result's bytes out.
void SetOutcome(wire::ResultFrame& result, bool interrupted, v1::TaskOutcome& outcome) {
  outcome.set_run_us(result.run_us());
  switch (result.outcome_case()) {
    case wire::ResultFrame::kError:
      // An interrupted function that gives up says so with CANCELLED.
      outcome.set_state(interrupted && result.error().code() ==
                                           static_cast<int>(absl::StatusCode::kCancelled)
                            ? v1::TASK_STATE_CANCELLED
                            : v1::TASK_STATE_FAILED);
      CopyError(*result.mutable_error(), *outcome.mutable_error());
      break;
    case wire::ResultFrame::kResult:
      outcome.set_state(v1::TASK_STATE_SUCCEEDED);
      outcome.set_result(std::move(*result.mutable_result()));
      break;
    case wire::ResultFrame::OUTCOME_NOT_SET:
      // A chunk: each item carries its own result or error; or a result in shared memory.
      outcome.set_state(v1::TASK_STATE_SUCCEEDED);
      if (result.has_shared_result()) {
        outcome.mutable_shared_result()->set_name(
            std::move(*result.mutable_shared_result()->mutable_name()));
        outcome.mutable_shared_result()->set_size(result.shared_result().size());
      }
      for (wire::ItemResult& item : *result.mutable_items()) {
        v1::ItemOutcome& item_outcome = *outcome.add_items();
        if (item.has_error()) {
          CopyError(*item.mutable_error(), *item_outcome.mutable_error());
        } else {
          item_outcome.set_result(std::move(*item.mutable_result()));
        }
      }
      break;
  }
}

// Records where a task ran: its first worker and, for a group task, all of them in order.
void SetWorkers(absl::Span<const int> members, bool group, v1::TaskOutcome& outcome) {
  outcome.set_worker(members.front());
  if (group) outcome.mutable_workers()->Add(members.begin(), members.end());
}

}  // namespace

absl::StatusOr<std::string> RandomResumeToken() {
  std::string token(16, '\0');
  size_t filled = 0;
  while (filled < token.size()) {
    const ssize_t n = getrandom(token.data() + filled, token.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  return token;
}

Scheduler::Scheduler(Options options)
    : workers_(options.workers),
      clock_(std::move(options.clock)),
      started_(clock_()),
      refused_functions_(std::move(options.refused_functions)),
      resume_grace_(std::max(options.resume_grace, absl::ZeroDuration())),
      max_unread_result_bytes_(options.max_unread_result_bytes),
      single_reserve_bytes_(ReplacementBytes(1)),
      group_reserve_bytes_(ReplacementBytes(options.workers)),
      max_message_bytes_(options.max_message_bytes),
      max_sessions_(options.max_sessions),
      max_queued_tasks_per_session_(options.max_queued_tasks_per_session),
      max_tasks_per_worker_(static_cast<size_t>(std::max(options.max_tasks_per_worker, 1))),
      long_task_after_(10 * options.prefetch_window),
      prefetch_window_us_(absl::ToDoubleMicroseconds(options.prefetch_window)),
      token_source_(std::move(options.token_source)),
      task_environments_(options.task_environments),
      shared_memory_prefix_(std::move(options.shared_memory_prefix)),
      release_shared_object_(std::move(options.release_shared_object)),
      worker_state_(static_cast<size_t>(workers_)),
      metrics_(started_),
      view_(workers_) {}

void Scheduler::Notify(Notifications& notifications) {
  for (const std::shared_ptr<SessionListener>& listener : notifications) {
    listener->OnSessionEvents();
  }
  notifications.clear();
}

absl::StatusOr<SessionId> Scheduler::OpenSession(
    std::string client_name, std::shared_ptr<SessionListener> listener,
    uint64_t client_max_message_bytes, SharedMemoryUse shared,
    const google::protobuf::Map<std::string, std::string>& env, uint32_t max_running_tasks) {
  if (!env.empty() && !task_environments_) {
    return absl::FailedPreconditionError(
        "env: this pool runs tasks inside its worker processes (--isolation=none), whose one "
        "environment every task shares; it cannot give a session's tasks variables of their own");
  }
  absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> variables = EnvVariables(env);
  if (!variables.ok()) return variables.status();
  Notifications notifications;
  absl::MutexLock lock(&mu_);
  if (pool_state_ == v1::POOL_STATE_DRAINING) {
    return absl::UnavailableError(absl::StrCat("the service is draining: ", pool_reason_));
  }
  if (max_sessions_ > 0) {
    size_t open = 0;
    // The detached session that has waited longest for its client: it makes room for a client
    // that is here, rather than sessions nobody may resume locking every new client out for a
    // whole grace period.
    SessionId oldest_detached = 0;
    absl::Time oldest_deadline = absl::InfiniteFuture();
    for (const auto& [id, session] : sessions_) {
      if (session.abandoned) continue;
      ++open;
      if (session.detached && session.grace_deadline < oldest_deadline) {
        oldest_detached = id;
        oldest_deadline = session.grace_deadline;
      }
    }
    if (open >= max_sessions_) {
      if (oldest_detached == 0) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the service holds its maximum of ", max_sessions_,
            " open sessions (--max_sessions), each with a client attached; retry once one has "
            "closed, or raise the limit"));
      }
      Session& evicted = sessions_.at(oldest_detached);
      const size_t live = evicted.live.size();
      AbandonLocked(evicted, absl::StrCat("cancelled: the session was detached and ended to make "
                                          "room for a new one (--max_sessions ",
                                          max_sessions_, ")"));
      Log(LogLevel::kInfo, "session ", oldest_detached,
          " abandoned while detached to make room for a new session (--max_sessions ",
          max_sessions_, "); its ", live, " unfinished tasks cancelled or interrupted");
      // An abandoned session has no listener: this only forgets it if nothing of it runs.
      MaybeNotifyLocked(oldest_detached, notifications);
    }
  }
  absl::StatusOr<std::string> token = token_source_();
  if (!token.ok()) return token.status();
  if (tokens_.contains(*token))
    return absl::InternalError("the resume token source repeated itself");
  const SessionId id = next_session_id_++;
  Session& session = sessions_[id];
  session.client_name = std::move(client_name);
  session.opened = clock_();
  session.listener = std::move(listener);
  session.max_outcome_bytes = MaxOutcomeBytes(client_max_message_bytes);
  if (!shared_memory_prefix_.empty()) session.shared = shared;
  session.env = *std::move(variables);
  session.max_running = max_running_tasks;
  tokens_.emplace(*token, id);
  session.resume_token = *std::move(token);
  return id;
}

uint64_t Scheduler::MaxOutcomeBytes(uint64_t client_max_message_bytes) const {
  uint64_t limit = max_message_bytes_;
  if (client_max_message_bytes > 0 && (limit == 0 || client_max_message_bytes < limit)) {
    limit = client_max_message_bytes;
  }
  if (limit == 0) return 0;
  return limit > kStreamFramingBytes ? limit - kStreamFramingBytes : 1;
}

absl::StatusOr<std::string> Scheduler::ResumeToken(SessionId id) const {
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned) {
    return absl::NotFoundError(absl::StrCat("no open session ", id));
  }
  return it->second.resume_token;
}

absl::StatusOr<const Scheduler::FunctionTraits*> Scheduler::ValidateLocked(
    const Session& session, const v1::TaskSpec& spec) const {
  if (pool_state_ == v1::POOL_STATE_DRAINING) {
    return absl::UnavailableError(absl::StrCat("the service is draining: ", pool_reason_));
  }
  if (pool_state_ == v1::POOL_STATE_BROKEN) {
    return absl::FailedPreconditionError(absl::StrCat("BrokenExecutor: ", pool_reason_));
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
  if (absl::Status status = CheckSharedPayloadLocked(session, spec); !status.ok()) return status;
  // While booting the functions are not known yet; PoolReady() checks the queued tasks.
  const FunctionTraits* traits = nullptr;
  if (pool_state_ == v1::POOL_STATE_READY) {
    absl::StatusOr<const FunctionTraits*> checked =
        CheckFunctionLocked(spec.function(), spec.payload_type(), spec.options().gang_size(),
                            spec.items_size() > 0 || spec.has_range());
    if (!checked.ok()) return checked.status();
    traits = *checked;
  }
  if (session.live.contains(spec.task_id()) || session.unread.contains(spec.task_id())) {
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
      session.unread_bytes + session.reserved_bytes + ReserveBytes(spec) >
          max_unread_result_bytes_) {
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

uint64_t Scheduler::ReserveBytes(const v1::TaskSpec& spec) const {
  return spec.options().broadcast() || spec.options().gang_size() > 1 ? group_reserve_bytes_
                                                                      : single_reserve_bytes_;
}

absl::Status Scheduler::CheckSharedPayloadLocked(const Session& session,
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

absl::Status Scheduler::CheckShape(const v1::TaskSpec& spec) const {
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

absl::StatusOr<const Scheduler::FunctionTraits*> Scheduler::CheckFunctionLocked(
    absl::string_view function, absl::string_view payload_type, uint32_t gang_size,
    bool several_inputs) const {
  const auto it = function_traits_.find(function);
  if (it == function_traits_.end()) {
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

absl::StatusOr<std::vector<v1::TaskRejection>> Scheduler::Submit(
    SessionId id, google::protobuf::RepeatedPtrField<v1::TaskSpec>& tasks) {
  std::vector<v1::TaskRejection> rejections;
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned) {
    return absl::NotFoundError(absl::StrCat("no open session ", id));
  }
  Session& session = it->second;
  const absl::Time now = clock_();
  for (v1::TaskSpec& spec : tasks) {
    session.last_task_id = std::max(session.last_task_id, spec.task_id());
    // A client that resumed re-sends the tasks it is not sure arrived; the session has these.
    if (session.resumed &&
        (session.live.contains(spec.task_id()) || session.unread.contains(spec.task_id()))) {
      continue;
    }
    const absl::StatusOr<const FunctionTraits*> traits = ValidateLocked(session, spec);
    if (!traits.ok()) {
      // The object was handed over with the task: a rejected task's is the service's to remove.
      if (session.shared.enabled && spec.has_shared_payload() &&
          IsSharedObjectName(spec.shared_payload().name(), shared_memory_prefix_)) {
        release_shared_object_(spec.shared_payload().name());
      }
      metrics_.Rejected(traits.status().code());
      v1::TaskRejection& rejection = rejections.emplace_back();
      rejection.set_task_id(spec.task_id());
      rejection.set_code(static_cast<int>(traits.status().code()));
      rejection.set_message(std::string(traits.status().message()));
      continue;
    }
    const TaskKey key = next_task_key_++;
    Task& task = tasks_[key];
    task.session = id;
    if (*traits != nullptr) {
      task.metrics = (*traits)->metrics;
      metrics_.Accepted(*task.metrics, PayloadBytes(spec));
    } else {
      // Booting: PoolReady() counts it under its function, if the pool has it.
      task.payload_bytes = PayloadBytes(spec);
    }
    task.client_id = spec.task_id();
    task.broadcast = spec.options().broadcast();
    task.gang_size = spec.options().gang_size();
    task.gang_function = *traits != nullptr && (*traits)->gang;
    task.max_retries = spec.options().max_retries();
    task.capped = session.max_running > 0 && !task.broadcast;
    task.reserved_bytes = ReserveBytes(spec);
    session.reserved_bytes += task.reserved_bytes;
    task.enqueued = now;
    task.frame.set_task_key(key);
    task.frame.set_run_timeout_ms(spec.options().run_timeout_ms());
    task.frame.set_max_result_bytes(session.max_outcome_bytes);
    task.frame.set_function(spec.function());
    task.frame.set_payload(std::move(*spec.mutable_payload()));
    if (!session.env.empty()) *task.frame.mutable_env() = session.env;
    if (spec.has_shared_payload()) {
      task.shared_input = spec.shared_payload().name();
      task.frame.mutable_shared_payload()->set_name(
          std::move(*spec.mutable_shared_payload()->mutable_name()));
      task.frame.mutable_shared_payload()->set_size(spec.shared_payload().size());
    }
    task.frame.mutable_items()->Swap(spec.mutable_items());
    if (spec.has_range()) {
      wire::RangeBatch& range = *task.frame.mutable_range();
      range.set_first(spec.range().first());
      range.set_count(spec.range().count());
      range.set_base_seed(spec.range().base_seed());
    }
    if (pool_state_ == v1::POOL_STATE_BOOTING) task.payload_type = spec.payload_type();
    if (const uint64_t timeout_ms = spec.options().queue_timeout_ms(); timeout_ms > 0) {
      // A deadline that never comes would never leave the heap; it is no deadline at all.
      const absl::Time deadline = now + QueueTimeout(timeout_ms);
      if (deadline != absl::InfiniteFuture()) queue_deadlines_.emplace(deadline, key);
    }
    session.live.emplace(spec.task_id(), key);
    session.queue.push_back(key);
    ++session.queued;
    ++queued_count_;
    EnterReadyRingLocked(id, session);
  }
  return rejections;
}

absl::StatusOr<std::vector<v1::CancelResult>> Scheduler::Cancel(SessionId id,
                                                                absl::Span<const uint64_t> task_ids,
                                                                bool interrupt_running,
                                                                bool force) {
  std::vector<v1::CancelResult> results;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.abandoned) {
      return absl::NotFoundError(absl::StrCat("no open session ", id));
    }
    for (const uint64_t task_id : task_ids) {
      v1::CancelResult& result = results.emplace_back();
      result.set_task_id(task_id);
      const auto live = it->second.live.find(task_id);
      if (live == it->second.live.end()) continue;
      Task& task = tasks_.at(live->second);
      if (!task.running) {
        CancelQueuedLocked(live->second, "cancelled by the client");
        result.set_cancelled(true);
      } else if (interrupt_running || force) {
        InterruptLocked(live->second, task, force);
        result.set_interrupted(true);
      }
    }
    MaybeNotifyLocked(id, notifications);
  }
  Notify(notifications);
  return results;
}

absl::Status Scheduler::Shutdown(SessionId id, bool cancel_pending) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.abandoned) {
      return absl::NotFoundError(absl::StrCat("no open session ", id));
    }
    Session& session = it->second;
    session.shut_down = true;
    if (cancel_pending) CancelAllQueuedLocked(session, "cancelled by the session's shutdown");
    MaybeNotifyLocked(id, notifications);
  }
  Notify(notifications);
  return absl::OkStatus();
}

void Scheduler::Abandon(SessionId id) {
  // Declared before the lock so that it is destroyed after the unlock: dropping what may be the
  // last reference to the listener must not run its destructor under the scheduler's lock.
  std::shared_ptr<SessionListener> released_listener;
  Notifications notifications;
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  released_listener = std::move(it->second.listener);
  AbandonLocked(it->second, "cancelled: the client went away");
  // Forgets the session now if nothing of it is running; it has no listener left to tell.
  MaybeNotifyLocked(id, notifications);
}

void Scheduler::AbandonLocked(Session& session, absl::string_view why) {
  session.abandoned = true;
  session.detached = false;
  tokens_.erase(session.resume_token);
  CancelAllQueuedLocked(session, why);
  // Nobody wants the results of the rest any more. Newest first: a worker runs its backlog in
  // the order it was handed, so the tasks behind its running one are dropped before that one's
  // flag is set, and none of them starts in its place meanwhile.
  std::vector<TaskKey> live;
  live.reserve(session.live.size());
  for (const auto& [client_id, key] : session.live) live.push_back(key);
  std::sort(live.begin(), live.end(), std::greater<TaskKey>());
  for (const TaskKey key : live) InterruptLocked(key, tasks_.at(key), /*force=*/false);
  for (v1::TaskOutcome& outcome : session.outbox) ReleaseSharedResultLocked(outcome);
  session.outbox.clear();
  session.started.clear();
  session.progress.clear();
  for (auto& [client_id, outcome] : session.retained) ReleaseSharedResultLocked(outcome);
  session.retained.clear();
  session.unread.clear();
  session.unread_bytes = 0;
}

void Scheduler::Detach(SessionId id) {
  // As in Abandon: the listener's last reference is dropped after the unlock.
  std::shared_ptr<SessionListener> released_listener;
  Notifications notifications;
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned || it->second.detached) return;
  Session& session = it->second;
  released_listener = std::move(session.listener);
  session.listener_told = false;
  if (resume_grace_ == absl::ZeroDuration()) {
    AbandonLocked(session, "cancelled: the client went away");
    MaybeNotifyLocked(id, notifications);
    return;
  }
  session.detached = true;
  session.grace_deadline = clock_() + resume_grace_;
  // Wakes AwaitWork() if this deadline is earlier than the one it waits for (HasWorkLocked).
  grace_deadlines_.emplace(session.grace_deadline, id);
}

absl::StatusOr<ResumedSession> Scheduler::Resume(absl::string_view token,
                                                 std::shared_ptr<SessionListener> listener,
                                                 absl::Span<const uint64_t> acked_task_ids,
                                                 uint64_t client_max_message_bytes,
                                                 SharedMemoryUse shared) {
  ResumedSession resumed;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const auto token_it = tokens_.find(token);
    if (token_it == tokens_.end()) {
      return absl::NotFoundError(
          "no session waits to be resumed with this token: it closed, its grace period passed, "
          "or it never existed");
    }
    resumed.id = token_it->second;
    Session& session = sessions_.at(resumed.id);
    if (!session.detached) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", resumed.id,
                       " is still held by another stream; retry once that stream has ended"));
    }
    AckLocked(session, acked_task_ids);
    session.detached = false;
    session.resumed = true;
    session.listener = std::move(listener);
    session.listener_told = false;
    // Outcomes written to the old stream go again, before those it never collected.
    std::vector<v1::TaskOutcome> outbox;
    outbox.reserve(session.retained.size() + session.outbox.size());
    for (auto& [client_id, outcome] : session.retained) outbox.push_back(std::move(outcome));
    session.retained.clear();
    std::sort(outbox.begin(), outbox.end(), [](const v1::TaskOutcome& a, const v1::TaskOutcome& b) {
      return a.task_id() < b.task_id();
    });
    std::move(session.outbox.begin(), session.outbox.end(), std::back_inserter(outbox));
    session.outbox = std::move(outbox);
    // The new client may accept less than the old one did.
    session.max_outcome_bytes = MaxOutcomeBytes(client_max_message_bytes);
    if (!shared_memory_prefix_.empty()) session.shared = shared;
    for (v1::TaskOutcome& outcome : session.outbox) {
      const auto held = session.unread.find(outcome.task_id());
      // Not held: acknowledged after it was written to the old stream, and dropped once collected.
      if (held == session.unread.end()) continue;
      if (FitToStreamLocked(session, outcome.ByteSizeLong(), outcome)) {
        session.unread_bytes -= held->second.bytes;
        held->second.bytes = HeldBytes(outcome);
        session.unread_bytes += held->second.bytes;
      }
    }
    resumed.last_task_id = session.last_task_id;
    resumed.pending_task_ids.reserve(session.live.size() + session.unread.size());
    for (const auto& [client_id, key] : session.live) resumed.pending_task_ids.push_back(client_id);
    for (const auto& [client_id, held] : session.unread) {
      resumed.pending_task_ids.push_back(client_id);
    }
    std::sort(resumed.pending_task_ids.begin(), resumed.pending_task_ids.end());
    MaybeNotifyLocked(resumed.id, notifications);
  }
  Notify(notifications);
  return resumed;
}

void Scheduler::AckLocked(Session& session, absl::Span<const uint64_t> task_ids) {
  for (const uint64_t task_id : task_ids) {
    const auto it = session.unread.find(task_id);
    // An outcome never collected cannot have been read: acknowledging it would free its bytes
    // while it still waits in the outbox.
    if (it == session.unread.end() || it->second.index >= session.collected) continue;
    session.unread_bytes -= it->second.bytes;
    session.unread.erase(it);
    // An outcome not given back yet is dropped when it is (Retain).
    session.retained.erase(task_id);
  }
}

absl::Status Scheduler::Ack(SessionId id, absl::Span<const uint64_t> task_ids) {
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned) {
    return absl::NotFoundError(absl::StrCat("no open session ", id));
  }
  AckLocked(it->second, task_ids);
  return absl::OkStatus();
}

void Scheduler::Retain(SessionId id,
                       google::protobuf::RepeatedPtrField<v1::TaskOutcome>& outcomes) {
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned) {
    // Nobody will read them now.
    for (v1::TaskOutcome& outcome : outcomes) ReleaseSharedResultLocked(outcome);
    return;
  }
  Session& session = it->second;
  for (v1::TaskOutcome& outcome : outcomes) {
    if (session.unread.contains(outcome.task_id())) {
      session.retained.insert_or_assign(outcome.task_id(), std::move(outcome));
    }
  }
}

void Scheduler::ExpireGracePeriodsLocked(absl::Time now, Notifications& notifications) {
  while (!grace_deadlines_.empty() && grace_deadlines_.top().first <= now) {
    const auto [deadline, id] = grace_deadlines_.top();
    grace_deadlines_.pop();
    const auto it = sessions_.find(id);
    // Resumed since (and maybe detached again, with a later deadline), or gone.
    if (it == sessions_.end() || !it->second.detached || it->second.grace_deadline != deadline) {
      continue;
    }
    const size_t live = it->second.live.size();
    AbandonLocked(it->second,
                  absl::StrCat("cancelled: the client did not resume the session within its grace "
                               "period of ",
                               absl::FormatDuration(resume_grace_)));
    Log(LogLevel::kInfo, "session ", id, " abandoned: no client resumed it within ",
        absl::FormatDuration(resume_grace_), "; its ", live,
        " unfinished tasks cancelled or interrupted");
    MaybeNotifyLocked(id, notifications);
  }
}

SessionEvents Scheduler::TakeEvents(SessionId id) {
  SessionEvents events;
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.abandoned) return events;
  Session& session = it->second;
  events.started.swap(session.started);
  if (session.pool_changed) {
    session.pool_changed = false;
    events.pool = PoolStateLocked();
  }
  events.outcomes.swap(session.outbox);
  session.collected = session.ended;
  events.progress.reserve(session.progress.size());
  for (auto& [client_id, progress] : session.progress) {
    events.progress.push_back(std::move(progress));
  }
  session.progress.clear();
  session.listener_told = false;
  events.closed = session.shut_down && session.live.empty();
  return events;
}

void Scheduler::ForgetClosed(SessionId id) {
  absl::MutexLock lock(&mu_);
  const auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second.shut_down || !it->second.live.empty()) return;
  tokens_.erase(it->second.resume_token);
  sessions_.erase(it);
}

v1::PoolStateChange Scheduler::PoolState() const {
  absl::MutexLock lock(&mu_);
  return PoolStateLocked();
}

v1::PoolStateChange Scheduler::PoolStateLocked() const {
  v1::PoolStateChange change;
  change.set_state(pool_state_);
  change.set_workers(static_cast<uint32_t>(workers_));
  change.set_reason(pool_reason_);
  return change;
}

void Scheduler::SetPoolStateLocked(v1::PoolState state, absl::string_view reason,
                                   Notifications& notifications) {
  pool_state_ = state;
  pool_reason_ = std::string(reason);
  std::vector<SessionId> ids;
  ids.reserve(sessions_.size());
  for (auto& [id, session] : sessions_) {
    session.pool_changed = true;
    ids.push_back(id);
  }
  for (const SessionId id : ids) MaybeNotifyLocked(id, notifications);
}

void Scheduler::PoolReady(std::vector<v1::FunctionInfo> functions) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (pool_state_ != v1::POOL_STATE_BOOTING) return;
    functions_ = std::move(functions);
    for (const v1::FunctionInfo& function : functions_) {
      FunctionTraits& traits = function_traits_[function.name()];
      traits.request_type = function.request_type();
      traits.gang = function.gang();
      traits.metrics = &metrics_.AddFunction(function.name());
    }
    std::vector<std::pair<TaskKey, absl::Status>> unfit;
    for (auto& [key, task] : tasks_) {
      const absl::StatusOr<const FunctionTraits*> traits =
          CheckFunctionLocked(task.frame.function(), task.payload_type, task.gang_size,
                              task.frame.items_size() > 0 || task.frame.has_range());
      if (traits.ok()) {
        task.gang_function = (*traits)->gang;
      } else {
        unfit.emplace_back(key, traits.status());
      }
      task.metrics = traits.ok() ? (*traits)->metrics : &metrics_.other();
      metrics_.Accepted(*task.metrics, task.payload_bytes);
    }
    for (const auto& [key, status] : unfit) {
      EndQueuedLocked(key, v1::TASK_STATE_FAILED, status.code(), status.message());
    }
    // Worker 0 on top of the stack: a light load lands on the lowest-numbered workers.
    for (int w = workers_ - 1; w >= 0; --w) idle_workers_.push_back(w);
    // Also tells the sessions whose tasks just failed.
    SetPoolStateLocked(v1::POOL_STATE_READY, "", notifications);
  }
  Notify(notifications);
}

void Scheduler::PoolBroken(absl::string_view reason) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (pool_state_ != v1::POOL_STATE_BOOTING) return;
    const std::string why = absl::StrCat("BrokenExecutor: ", reason);
    for (auto& [id, session] : sessions_) {
      for (const TaskKey key : session.queue) {
        if (tasks_.contains(key)) {
          EndQueuedLocked(key, v1::TASK_STATE_FAILED, absl::StatusCode::kFailedPrecondition, why);
        }
      }
      session.queue.clear();
    }
    SetPoolStateLocked(v1::POOL_STATE_BROKEN, reason, notifications);
  }
  Notify(notifications);
}

void Scheduler::FailRunning(absl::string_view reason) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    // The workers stay busy: they are still running their tasks, and are about to be stopped.
    for (Worker& worker : worker_state_) {
      for (const TaskKey key : worker.tasks) {
        // A group task ends once, with its first member.
        const auto task = tasks_.find(key);
        if (task == tasks_.end()) continue;
        const SessionId id = task->second.session;
        if (task->second.capped) ReleaseCapLocked(id, task->second.running_members);
        v1::TaskOutcome outcome;
        outcome.set_state(v1::TASK_STATE_FAILED);
        SetWorkers(task->second.members, task->second.group(), outcome);
        outcome.set_queue_us(MicrosBetween(task->second.enqueued, task->second.started));
        SetError(absl::StatusCode::kCancelled, reason, *outcome.mutable_error());
        EndTaskLocked(key, std::move(outcome));
        MaybeNotifyLocked(id, notifications);
      }
      worker.tasks.clear();
      worker.open = false;
    }
    running_count_ = 0;
    open_workers_ = 0;
  }
  Notify(notifications);
}

void Scheduler::Drain(absl::string_view reason) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (pool_state_ == v1::POOL_STATE_DRAINING) return;
    const std::string why = absl::StrCat("cancelled: the service is draining (", reason, ")");
    // Ids first: MaybeNotifyLocked may erase abandoned sessions.
    std::vector<SessionId> ids;
    ids.reserve(sessions_.size());
    for (auto& [id, session] : sessions_) {
      session.shut_down = true;
      CancelAllQueuedLocked(session, why);
      ids.push_back(id);
    }
    for (const SessionId id : ids) MaybeNotifyLocked(id, notifications);
    SetPoolStateLocked(v1::POOL_STATE_DRAINING, reason, notifications);
  }
  Notify(notifications);
}

bool Scheduler::AwaitNoRunningTasks(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const auto none_running = [this]()
                                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_count_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&none_running), deadline);
}

void Scheduler::StopDispatch() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::StatusOr<std::vector<v1::FunctionInfo>> Scheduler::Functions() const {
  absl::MutexLock lock(&mu_);
  if (pool_state_ == v1::POOL_STATE_BOOTING) {
    return absl::UnavailableError(
        "the pool is still starting; its functions are known once the workers are up");
  }
  if (function_traits_.empty() && pool_state_ == v1::POOL_STATE_BROKEN) {
    return absl::FailedPreconditionError(absl::StrCat("BrokenExecutor: ", pool_reason_));
  }
  return functions_;
}

v1::PoolStatus Scheduler::Status() const {
  v1::PoolStatus status;
  absl::MutexLock lock(&mu_);
  status.set_workers(static_cast<uint32_t>(workers_));
  status.set_busy_workers(static_cast<uint32_t>(running_count_));
  status.set_queued_tasks(queued_count_);
  status.set_sessions(static_cast<uint32_t>(sessions_.size()));
  const TaskMetrics::Totals ended = metrics_.EndedTotals();
  status.set_tasks_succeeded(ended.succeeded);
  status.set_tasks_failed(ended.failed);
  status.set_tasks_cancelled(ended.cancelled);
  const absl::Time now = clock_();
  status.set_uptime_ms(static_cast<uint64_t>(absl::ToInt64Milliseconds(now - started_)));
  status.set_recent_tasks_per_second(metrics_.RecentTasksPerSecond(now));
  status.set_draining(pool_state_ == v1::POOL_STATE_DRAINING);
  status.set_state(pool_state_);
  status.set_state_reason(pool_reason_);
  status.set_workers_down(static_cast<uint32_t>(workers_down_));
  status.set_degraded_reason(degraded_);
  for (const v1::FunctionInfo& function : functions_) *status.add_functions() = function;
  std::vector<std::pair<SessionId, const Session*>> open;
  for (const auto& [id, session] : sessions_) {
    if (!session.abandoned) open.emplace_back(id, &session);
  }
  std::sort(open.begin(), open.end());
  for (const auto& [id, session] : open) {
    v1::SessionStatus& entry = *status.add_session_list();
    entry.set_session_id(id);
    entry.set_client_name(session->client_name);
    entry.set_queued_tasks(session->queued);
    entry.set_running_tasks(session->live.size() - session->queued);
    entry.set_detached(session->detached);
    entry.set_unread_result_bytes(session->unread_bytes);
    entry.set_max_running_tasks(session->max_running);
    session->tally.AppendTo(now, session->opened, entry);
  }
  AppendPoolViewLocked(now, status);
  return status;
}

Scheduler::MetricsSnapshot Scheduler::Metrics() const {
  MetricsSnapshot snapshot;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  for (const auto& [id, session] : sessions_) {
    if (session.abandoned) continue;
    ++snapshot.sessions;
    if (session.detached) ++snapshot.detached_sessions;
  }
  snapshot.workers = workers_;
  snapshot.busy_workers = running_count_;
  snapshot.workers_down = workers_down_;
  snapshot.workers_lost = workers_lost_;
  snapshot.queued_tasks = queued_count_;
  snapshot.uptime = now - started_;
  snapshot.tasks_per_second = metrics_.RecentTasksPerSecond(now);
  snapshot.state = pool_state_;
  snapshot.tasks = metrics_.TakeSnapshot();
  return snapshot;
}

std::string Scheduler::PrometheusText() const { return Metrics().PrometheusText(); }

Scheduler::TaskKey Scheduler::PeekQueuedLocked(Session& session) {
  while (!session.queue.empty()) {
    const TaskKey key = session.queue.front();
    // Keys of tasks cancelled or expired while queued are skipped here.
    const auto task = tasks_.find(key);
    if (task != tasks_.end() && !task->second.running) return key;
    session.queue.pop_front();
  }
  return 0;
}

size_t Scheduler::WorkersNeeded(const Task& task) const {
  if (task.broadcast) return static_cast<size_t>(workers_);
  if (task.gang_function) return std::max<size_t>(task.gang_size, 1);
  return 1;
}

void Scheduler::TakeIdleWorkersLocked(size_t count, absl::InlinedVector<int, 1>& members) {
  if (count == 1) {
    members.push_back(idle_workers_.back());
    idle_workers_.pop_back();
    return;
  }
  // The lowest-numbered idle workers, so that a gang's ranks follow the workers' order and the
  // choice does not depend on which finished last; the others keep their reuse order.
  std::vector<int> sorted = idle_workers_;
  std::sort(sorted.begin(), sorted.end());
  members.assign(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(count));
  idle_workers_.erase(std::remove_if(idle_workers_.begin(), idle_workers_.end(),
                                     [&members](int worker) {
                                       return std::binary_search(members.begin(), members.end(),
                                                                 worker);
                                     }),
                      idle_workers_.end());
}

bool Scheduler::PickWorkersLocked(const Task& task, size_t count, absl::Time now,
                                  absl::InlinedVector<int, 1>& members) {
  if (idle_workers_.size() >= count) {
    TakeIdleWorkersLocked(count, members);
    return true;
  }
  if (task.group() || open_workers_ == 0) return false;
  // The open worker with the shortest backlog; the lowest-numbered among equals.
  int best = -1;
  for (int w = 0; w < workers_; ++w) {
    Worker& worker = worker_state_[static_cast<size_t>(w)];
    if (!worker.open) continue;
    if (now - worker.head_started > long_task_after_) {
      worker.head_overran = true;
      UpdateOpenLocked(w);
      continue;
    }
    if (best < 0 || worker.tasks.size() < worker_state_[static_cast<size_t>(best)].tasks.size()) {
      best = w;
    }
  }
  if (best < 0) return false;
  members.push_back(best);
  return true;
}

void Scheduler::UpdateOpenLocked(int w) {
  Worker& worker = worker_state_[static_cast<size_t>(w)];
  const bool open = !worker.tasks.empty() && !worker.group && !worker.head_overran &&
                    worker.tasks.size() < worker.depth;
  if (open != worker.open) {
    worker.open = open;
    if (open) {
      ++open_workers_;
    } else {
      --open_workers_;
    }
  }
}

void Scheduler::LearnRunTimeLocked(int w, uint64_t run_us) {
  Worker& worker = worker_state_[static_cast<size_t>(w)];
  const double run = static_cast<double>(run_us);
  // A weight of 1/8: a few tasks of a new length are enough to change course.
  worker.mean_run_us =
      worker.mean_run_us < 0 ? run : worker.mean_run_us + (run - worker.mean_run_us) / 8;
  const double fits = prefetch_window_us_ / std::max(worker.mean_run_us, 1.0);
  worker.depth = fits >= static_cast<double>(max_tasks_per_worker_)
                     ? max_tasks_per_worker_
                     : std::max<size_t>(static_cast<size_t>(fits), 1);
  UpdateOpenLocked(w);
}

void Scheduler::StartLocked(TaskKey key, Task& task, absl::Time now, DispatchWork& work) {
  const size_t count = task.members.size();
  task.running = true;
  task.started = now;
  ++task.attempts;
  task.running_members = static_cast<int>(count);
  for (const int w : task.members) {
    Worker& worker = worker_state_[static_cast<size_t>(w)];
    if (worker.tasks.empty()) {
      ++running_count_;
      worker.head_started = now;
      worker.head_overran = false;
    }
    worker.tasks.push_back(key);
    worker.group = task.group();
    UpdateOpenLocked(w);
  }
  if (!task.group()) {
    const Session& session = sessions_.at(task.session);
    if (session.shared.enabled && session.shared.result_min_bytes > 0) {
      task.frame.set_shared_result_prefix(shared_memory_prefix_);
      task.frame.set_shared_result_min_bytes(session.shared.result_min_bytes);
    }
    // Behind another in the worker's backlog it may go back to the queue unstarted if the
    // worker is lost (WorkerLost): keep the frame until it is the worker's first.
    const bool behind = worker_state_[static_cast<size_t>(task.members.front())].tasks.size() > 1;
    if (task.attempts <= task.max_retries || behind) {
      // It may run again if its runner dies: keep the frame.
      work.assignments.push_back(Assignment{task.members.front(), task.frame});
    } else {
      work.assignments.push_back(Assignment{task.members.front(), std::move(task.frame)});
      task.frame.Clear();
    }
    return;
  }
  task.results.resize(count);
  // Only a gang function makes a communicator; a plain function broadcast runs alone on each.
  if (task.gang_function) {
    task.frame.mutable_gang()->Add(task.members.begin(), task.members.end());
  }
  for (size_t i = 0; i < count; ++i) {
    Assignment& assignment = work.assignments.emplace_back();
    assignment.worker = task.members[i];
    if (i + 1 < count) {
      assignment.frame = task.frame;
    } else {
      assignment.frame = std::move(task.frame);
    }
  }
  task.frame.Clear();
}

bool Scheduler::HasWorkLocked() const {
  // While a group task waits for its workers nothing else may start, so fewer idle workers than
  // it needs are no work.
  const bool room = held_key_ != 0 ? idle_workers_.size() >= held_need_
                                   : !idle_workers_.empty() || open_workers_ > 0;
  // The ring, not queued_count_: tasks of sessions at their cap are no work until one leaves.
  return stopping_ || wake_ || !interrupts_.empty() || (!ready_ring_.empty() && room) ||
         (!grace_deadlines_.empty() && grace_deadlines_.top().first < grace_wake_);
}

void Scheduler::InterruptLocked(TaskKey key, Task& task, bool force) {
  // A kill may follow a flag, never the other way round.
  if (!task.running || task.forced || (task.interrupted && !force)) return;
  task.interrupted = true;
  task.forced = force;
  // Members that have already reported are done with it.
  for (const int member : task.members) {
    const std::deque<TaskKey>& held = worker_state_[static_cast<size_t>(member)].tasks;
    if (std::find(held.begin(), held.end(), key) != held.end()) {
      interrupts_.push_back(Interrupt{member, key, force});
    }
  }
}

void Scheduler::RequeueLocked(TaskKey key, Task& task) {
  task.running = false;
  task.members.clear();
  task.running_members = 0;
  Session& session = sessions_.at(task.session);
  // Ahead of the session's other tasks: it was accepted before them. Its queue timeout does not
  // apply again; that bounded the wait for a first start.
  session.queue.push_front(key);
  ++session.queued;
  ++queued_count_;
  EnterReadyRingLocked(task.session, session);
}

void Scheduler::EnterReadyRingLocked(SessionId id, Session& session) {
  if (session.in_ready_ring || session.queued == 0) return;
  // A session at its cap comes back when one of its tasks leaves its worker (ReleaseCapLocked).
  if (session.max_running > 0 && session.on_workers >= session.max_running) return;
  session.in_ready_ring = true;
  ready_ring_.push_back(id);
}

void Scheduler::ReleaseCapLocked(SessionId id, size_t members) {
  Session& session = sessions_.at(id);
  session.on_workers -= members;
  EnterReadyRingLocked(id, session);
}

DispatchWork Scheduler::AwaitWork(absl::Duration timeout) {
  DispatchWork work;
  Notifications notifications;
  {
    mu_.Lock();
    // The earliest grace deadline bounds the wait, so that a detached session expires even while
    // the pool is idle; a later Detach with an earlier deadline wakes the wait (HasWorkLocked).
    absl::Duration wait = timeout;
    if (!grace_deadlines_.empty()) {
      grace_wake_ = grace_deadlines_.top().first;
      wait = std::min(wait, std::max(grace_wake_ - clock_(), absl::ZeroDuration()));
    }
    const absl::Condition has_work(this, &Scheduler::HasWorkLocked);
    if (wait == absl::InfiniteDuration()) {
      mu_.Await(has_work);
    } else if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(has_work, wait);
    }
    // A zero wait is a poll: Mutex::AwaitWithTimeout would block on a futex, a system call, even
    // to time out at once.
    grace_wake_ = absl::InfiniteFuture();
    wake_ = false;
    const absl::Time now = clock_();
    ExpireQueueTimeoutsLocked(now, notifications);
    ExpireGracePeriodsLocked(now, notifications);
    while ((!idle_workers_.empty() || open_workers_ > 0) && !ready_ring_.empty()) {
      const SessionId id = ready_ring_.front();
      ready_ring_.pop_front();
      const auto session_it = sessions_.find(id);
      if (session_it == sessions_.end()) continue;
      Session& session = session_it->second;
      const TaskKey key = PeekQueuedLocked(session);
      if (key == 0) {
        session.in_ready_ring = false;
        continue;
      }
      Task& task = tasks_.at(key);
      const size_t needed = WorkersNeeded(task);
      if (task.capped && session.on_workers + needed > session.max_running) {
        // At its cap: it waits out of the ring, so that it holds no worker back from the
        // sessions behind it, until one of its tasks leaves its worker (ReleaseCapLocked). Some
        // does: a gang never needs more than the cap (ValidateLocked), so it has tasks out.
        session.in_ready_ring = false;
        continue;
      }
      if (!PickWorkersLocked(task, needed, now, task.members)) {
        // The session keeps its turn, and the idle workers stay idle, until enough are.
        ready_ring_.push_front(id);
        if (task.group()) {
          held_key_ = key;
          held_need_ = needed;
        }
        break;
      }
      if (key == held_key_) held_key_ = 0;
      session.queue.pop_front();
      --session.queued;
      --queued_count_;
      if (task.capped) session.on_workers += needed;
      // Its next turn comes after the other sessions' turns, or once it is below its cap again.
      session.in_ready_ring = false;
      if (session.queued == 0) session.queue.clear();
      EnterReadyRingLocked(id, session);
      StartLocked(key, task, now, work);
      if (!session.abandoned) {
        session.started.push_back(task.client_id);
        MaybeNotifyLocked(id, notifications);
      }
    }
    work.interrupts.swap(interrupts_);
    work.stopping = stopping_;
    mu_.Unlock();
  }
  Notify(notifications);
  return work;
}

void Scheduler::Complete(int worker, wire::ResultFrame result) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    CompleteLocked(worker, std::move(result), clock_(), notifications);
  }
  Notify(notifications);
}

void Scheduler::Complete(absl::Span<WorkerResult> results) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_();
    for (WorkerResult& result : results) {
      CompleteLocked(result.worker, std::move(result.result), now, notifications);
    }
  }
  Notify(notifications);
}

bool Scheduler::ReleaseFromWorkerLocked(int worker, TaskKey key, absl::Time now) {
  Worker& state = worker_state_[static_cast<size_t>(worker)];
  // Normally the first it holds; one interrupted while in its backlog may end before.
  const auto held = std::find(state.tasks.begin(), state.tasks.end(), key);
  if (key == 0 || held == state.tasks.end()) return false;
  if (held == state.tasks.begin()) {
    // The next one runs from now.
    state.head_started = now;
    state.head_overran = false;
    if (state.tasks.size() > 1) {
      // Running now: it no longer needs the copy of its frame it kept while it waited (see
      // StartLocked), unless it may run again.
      Task& next = tasks_.at(state.tasks[1]);
      if (!next.group() && next.attempts > next.max_retries) next.frame.Clear();
    }
  }
  state.tasks.erase(held);
  if (state.tasks.empty()) {
    // A gang member that is done is free at once, even while the rest of its gang runs.
    --running_count_;
    state.group = false;
    idle_workers_.push_back(worker);
  }
  const Task& task = tasks_.at(key);
  if (task.capped) ReleaseCapLocked(task.session, 1);
  return true;
}

void Scheduler::CompleteLocked(int worker, wire::ResultFrame result, absl::Time now,
                               Notifications& notifications) {
  if (worker < 0 || worker >= workers_) return;
  const TaskKey key = result.task_key();
  if (!ReleaseFromWorkerLocked(worker, key, now)) return;
  view_.Reported(worker, result.has_error(), result.runner_pid());
  Task& task = tasks_.at(key);
  if (task.group() || task.interrupted) {
    // An interrupted task's time says nothing of how long such tasks take.
    UpdateOpenLocked(worker);
  } else {
    LearnRunTimeLocked(worker, result.run_us());
  }
  const bool retry = result.runner_lost() && !task.group() && task.attempts <= task.max_retries &&
                     !task.interrupted && pool_state_ != v1::POOL_STATE_DRAINING;
  if (result.runner_lost()) {
    Log(LogLevel::kWarning, "worker ", worker, " lost the process running task ", task.client_id,
        " of session ", task.session, " (attempt ", task.attempts, "): ", result.error().message(),
        retry ? "; the task runs again" : "");
  }
  if (retry) {
    RequeueLocked(key, task);
    return;
  }
  v1::TaskOutcome outcome;
  if (task.group()) {
    const auto member = std::find(task.members.begin(), task.members.end(), worker);
    task.results[static_cast<size_t>(member - task.members.begin())] = std::move(result);
    if (--task.running_members > 0) return;
    outcome = GroupOutcome(task);
  } else {
    const bool runner_lost = result.runner_lost();
    SetOutcome(result, task.interrupted, outcome);
    if (runner_lost && task.attempts > 1) {
      outcome.mutable_error()->set_message(absl::StrCat(
          "failed on all ", task.attempts, " attempts; the last: ", outcome.error().message()));
    }
  }
  outcome.set_attempts(task.attempts);
  SetWorkers(task.members, task.group(), outcome);
  outcome.set_queue_us(MicrosBetween(task.enqueued, task.started));
  const SessionId id = task.session;
  EndTaskLocked(key, std::move(outcome));
  MaybeNotifyLocked(id, notifications);
}

std::vector<int> Scheduler::WorkerLost(int worker, absl::string_view why) {
  std::vector<int> survivors;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (worker < 0 || worker >= workers_) return survivors;
    Worker& state = worker_state_[static_cast<size_t>(worker)];
    if (state.down) return survivors;
    state.down = true;
    ++workers_down_;
    ++workers_lost_;
    const std::vector<TaskKey> held(state.tasks.begin(), state.tasks.end());
    const absl::Time now = clock_();
    // Last first: each goes back to the front of its session's queue, so their order holds; and
    // the first it held stays first until the rest are off (see ReleaseFromWorkerLocked).
    for (size_t i = held.size(); i-- > 0;) {
      const TaskKey key = held[i];
      if (i > 0) {
        // Waiting in its backlog: it never started (a worker runs its tasks in order), so its
        // attempt is given back.
        Task& waiting = tasks_.at(key);
        if (!waiting.interrupted && pool_state_ != v1::POOL_STATE_DRAINING) {
          ReleaseFromWorkerLocked(worker, key, now);
          UpdateOpenLocked(worker);
          --waiting.attempts;
          RequeueLocked(key, waiting);
          continue;
        }
      }
      wire::ResultFrame lost;
      lost.set_task_key(key);
      lost.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kAborted));
      lost.mutable_error()->set_message(std::string(why));
      // A gang's first loss is what its outcome tells (GroupOutcome); the members lost after it
      // (killed because of it, say) only failed with it.
      const auto task = tasks_.find(key);
      lost.set_runner_lost(
          task == tasks_.end() ||
          std::none_of(task->second.results.begin(), task->second.results.end(),
                       [](const wire::ResultFrame& result) { return result.runner_lost(); }));
      CompleteLocked(worker, std::move(lost), now, notifications);
      // A gang still running on its other members: release them.
      const auto running = tasks_.find(key);
      if (running == tasks_.end() || !running->second.gang_function) continue;
      for (const int member : running->second.members) {
        const std::deque<TaskKey>& theirs = worker_state_[static_cast<size_t>(member)].tasks;
        if (std::find(theirs.begin(), theirs.end(), key) != theirs.end()) {
          survivors.push_back(member);
        }
      }
      InterruptLocked(key, running->second, /*force=*/false);
    }
    // CompleteLocked made it idle once it held nothing.
    idle_workers_.erase(std::remove(idle_workers_.begin(), idle_workers_.end(), worker),
                        idle_workers_.end());
  }
  Notify(notifications);
  return survivors;
}

bool Scheduler::TakeIdleWorker(int worker) {
  absl::MutexLock lock(&mu_);
  if (worker < 0 || worker >= workers_) return false;
  const auto idle = std::find(idle_workers_.begin(), idle_workers_.end(), worker);
  if (idle == idle_workers_.end()) return false;
  idle_workers_.erase(idle);
  worker_state_[static_cast<size_t>(worker)].down = true;
  ++workers_down_;
  return true;
}

void Scheduler::WorkerUp(int worker) {
  absl::MutexLock lock(&mu_);
  if (worker < 0 || worker >= workers_) return;
  Worker& state = worker_state_[static_cast<size_t>(worker)];
  if (!state.down) return;
  // A new process: what was learnt of the old one's run times no longer holds.
  state = Worker();
  --workers_down_;
  idle_workers_.push_back(worker);
}

void Scheduler::SetWorkerProcess(int worker, absl::string_view host, int pid, int runner_pid) {
  absl::MutexLock lock(&mu_);
  view_.SetProcess(worker, host, pid, runner_pid);
}

void Scheduler::SetDegraded(std::string reason) {
  absl::MutexLock lock(&mu_);
  degraded_ = std::move(reason);
}

void Scheduler::WakeDispatch() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

v1::TaskOutcome Scheduler::GroupOutcome(Task& task) {
  v1::TaskOutcome outcome;
  uint64_t run_us = 0;
  for (const wire::ResultFrame& result : task.results) run_us = std::max(run_us, result.run_us());
  if (task.broadcast) {
    // Each worker's call succeeds or fails on its own, as the items of a chunk do.
    outcome.set_state(v1::TASK_STATE_SUCCEEDED);
    for (wire::ResultFrame& result : task.results) {
      v1::ItemOutcome& item = *outcome.add_items();
      if (result.has_error()) {
        CopyError(*result.mutable_error(), *item.mutable_error());
      } else {
        item.set_result(std::move(*result.mutable_result()));
      }
    }
  } else {
    // The gang's outcome is rank 0's, unless a rank failed: then the lowest that was lost with
    // its worker (the others' failures follow from that), else the lowest that failed.
    auto failed =
        std::find_if(task.results.begin(), task.results.end(),
                     [](const wire::ResultFrame& result) { return result.runner_lost(); });
    if (failed == task.results.end()) {
      failed = std::find_if(task.results.begin(), task.results.end(),
                            [](const wire::ResultFrame& result) { return result.has_error(); });
    }
    const size_t rank =
        failed == task.results.end() ? 0 : static_cast<size_t>(failed - task.results.begin());
    SetOutcome(task.results[rank], task.interrupted, outcome);
    if (outcome.has_error()) {
      outcome.mutable_error()->set_message(absl::StrCat(
          "gang rank ", rank, " (worker ", task.members[rank], "): ", outcome.error().message()));
    }
  }
  outcome.set_run_us(run_us);
  return outcome;
}

void Scheduler::Progress(int worker, const wire::ProgressFrame& progress) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (worker < 0 || worker >= workers_) return;
    const TaskKey key = progress.task_key();
    const std::deque<TaskKey>& held = worker_state_[static_cast<size_t>(worker)].tasks;
    if (key == 0 || std::find(held.begin(), held.end(), key) == held.end()) return;
    const Task& task = tasks_.at(key);
    Session& session = sessions_.at(task.session);
    if (session.abandoned) return;
    v1::TaskProgress& latest = session.progress[task.client_id];
    latest.set_task_id(task.client_id);
    latest.set_fraction(progress.fraction());
    latest.set_message(progress.message());
    MaybeNotifyLocked(task.session, notifications);
  }
  Notify(notifications);
}

void Scheduler::EndTaskLocked(TaskKey key, v1::TaskOutcome outcome) {
  const auto task_it = tasks_.find(key);
  const SessionId id = task_it->second.session;
  const uint64_t client_id = task_it->second.client_id;
  TaskMetrics::Function* function_metrics = task_it->second.metrics;
  if (function_metrics == nullptr) {
    // Submitted while booting and ended before the pool was ready: its function never became
    // known.
    function_metrics = &metrics_.other();
    metrics_.Accepted(*function_metrics, task_it->second.payload_bytes);
  }
  if (!task_it->second.shared_input.empty()) release_shared_object_(task_it->second.shared_input);
  Session& session = sessions_.at(id);
  // The outcome takes the place of the task's reservation; a failure made below fits in it.
  session.reserved_bytes -= task_it->second.reserved_bytes;
  tasks_.erase(task_it);
  size_t size = 0;
  if (session.abandoned) {
    ReleaseSharedResultLocked(outcome);
  } else {
    outcome.set_task_id(client_id);
    FitToStreamLocked(session, outcome.ByteSizeLong(), outcome);
    size = HeldBytes(outcome);
    if (max_unread_result_bytes_ > 0 &&
        session.unread_bytes + session.reserved_bytes + size > max_unread_result_bytes_) {
      BoundUnreadLocked(session, client_id, size, outcome);
      size = HeldBytes(outcome);
    }
  }

  const absl::Time now = clock_();
  metrics_.Ended(*function_metrics, outcome, now);
  const int64_t second = absl::ToUnixSeconds(now);
  view_.Ended(second);
  session.tally.Ended(outcome.state(), second);
  if (outcome.state() == v1::TASK_STATE_FAILED) {
    view_.Failed(now, id, session.client_name, client_id, function_metrics->name, outcome);
  }
  session.live.erase(client_id);
  session.progress.erase(client_id);
  if (!session.abandoned) {
    session.unread.emplace(client_id, HeldOutcome{size, session.ended++});
    session.unread_bytes += size;
    session.outbox.push_back(std::move(outcome));
  }
}

bool Scheduler::FitToStreamLocked(const Session& session, size_t size, v1::TaskOutcome& outcome) {
  if (session.max_outcome_bytes == 0 || size <= session.max_outcome_bytes) return false;
  FailResourceExhaustedLocked(
      absl::StrCat("the outcome of task ", outcome.task_id(), " (", size,
                   " bytes) is larger than the largest message its session's stream carries (",
                   session.max_outcome_bytes,
                   " bytes: the service's --max_message_mb or the client's max_message_bytes, "
                   "whichever is smaller, less framing); raise both, or return less"),
      outcome);
  return true;
}

void Scheduler::BoundUnreadLocked(const Session& session, uint64_t client_id, size_t size,
                                  v1::TaskOutcome& outcome) {
  FailResourceExhaustedLocked(
      absl::StrCat("the outcome of task ", client_id, " (", size,
                   " bytes) would take its session past the server's limit of ",
                   max_unread_result_bytes_,
                   " bytes of unread outcomes (--max_unread_result_mb): the session already holds ",
                   session.unread_bytes,
                   " bytes of outcomes its client has not read; raise --max_unread_result_mb or "
                   "read results sooner"),
      outcome);
}

void Scheduler::FailResourceExhaustedLocked(std::string message, v1::TaskOutcome& outcome) {
  ReleaseSharedResultLocked(outcome);
  FailResourceExhausted(std::move(message), outcome);
}

void Scheduler::ReleaseSharedResultLocked(v1::TaskOutcome& outcome) {
  if (!outcome.has_shared_result()) return;
  release_shared_object_(outcome.shared_result().name());
  outcome.clear_shared_result();
}

void Scheduler::CancelQueuedLocked(TaskKey key, absl::string_view why) {
  EndQueuedLocked(key, v1::TASK_STATE_CANCELLED, absl::StatusCode::kCancelled, why);
}

void Scheduler::EndQueuedLocked(TaskKey key, v1::TaskState state, absl::StatusCode code,
                                absl::string_view why) {
  const Task& task = tasks_.at(key);
  Session& session = sessions_.at(task.session);
  --session.queued;
  --queued_count_;
  // A group task that was waiting for its workers no longer holds the others back.
  if (key == held_key_) held_key_ = 0;
  v1::TaskOutcome outcome;
  outcome.set_state(state);
  outcome.set_worker(-1);
  outcome.set_queue_us(MicrosBetween(task.enqueued, clock_()));
  SetError(code, why, *outcome.mutable_error());
  // The key stays in the session's queue and the deadline heap; both skip it once it is gone.
  EndTaskLocked(key, std::move(outcome));
}

void Scheduler::CancelAllQueuedLocked(Session& session, absl::string_view why) {
  for (const TaskKey key : session.queue) {
    const auto task = tasks_.find(key);
    if (task != tasks_.end() && !task->second.running) CancelQueuedLocked(key, why);
  }
  session.queue.clear();
}

void Scheduler::MaybeNotifyLocked(SessionId id, Notifications& notifications) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& session = it->second;
  if (session.abandoned) {
    if (session.live.empty()) sessions_.erase(it);
    return;
  }
  const bool has_events = !session.outbox.empty() || !session.started.empty() ||
                          !session.progress.empty() || session.pool_changed ||
                          (session.shut_down && session.live.empty());
  if (has_events && !session.listener_told && session.listener) {
    session.listener_told = true;
    notifications.push_back(session.listener);
  }
}

void Scheduler::ExpireQueueTimeoutsLocked(absl::Time now, Notifications& notifications) {
  while (!queue_deadlines_.empty() && queue_deadlines_.top().first <= now) {
    const TaskKey key = queue_deadlines_.top().second;
    queue_deadlines_.pop();
    const auto task = tasks_.find(key);
    if (task == tasks_.end() || task->second.running) continue;
    const SessionId id = task->second.session;
    EndQueuedLocked(key, v1::TASK_STATE_FAILED, absl::StatusCode::kDeadlineExceeded,
                    "the task's queue timeout passed before a worker was free");
    MaybeNotifyLocked(id, notifications);
  }
}

}  // namespace mpigate::server
