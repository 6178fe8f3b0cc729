// TaskIntake: what the scheduler accepts. It holds the functions the workers registered, checks
// each submitted task against them, the pool's state and its session's limits, and turns an
// accepted v1.TaskSpec into the wire.TaskFrame a worker runs; it also checks a session's
// environment variables (OpenSession.env) once, for every frame of the session to carry.
//
// Thread-safety: none of its own; the scheduler owns one and calls it under its lock.
#ifndef MPIGATE_SERVER_TASK_INTAKE_H_
#define MPIGATE_SERVER_TASK_INTAKE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"
#include "server/session_table.h"
#include "server/task_metrics.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

class TaskIntake {
 public:
  struct Options {
    // The pool's size: no gang may be larger.
    int workers = 1;
    // Functions refused, with why: submitting one is PERMISSION_DENIED with that message.
    absl::flat_hash_map<std::string, std::string> refused_functions;
    // The most tasks one session may have queued; 0 for no limit.
    size_t max_queued_tasks_per_session = 0;
    // The most bytes of outcomes one session may hold; 0 for no limit.
    uint64_t max_unread_result_bytes = 0;
    // Tasks may have environments of their own (OpenSession.env).
    bool task_environments = true;
    // The name prefix of the gateway's shared memory objects; empty: no shared memory.
    std::string shared_memory_prefix;
  };

  // What the scheduler needs to know of a registered function.
  struct FunctionTraits {
    // The Protobuf message it takes, or "" for a function of bytes.
    std::string request_type;
    // A gang function (worker/gang.h).
    bool gang = false;
    // Its figures, found once here rather than by name on every submit.
    TaskMetrics::Function* metrics = nullptr;
  };

  explicit TaskIntake(Options options);
  TaskIntake(const TaskIntake&) = delete;
  TaskIntake& operator=(const TaskIntake&) = delete;

  const std::string& shared_memory_prefix() const { return shared_memory_prefix_; }

  // OpenSession.env as each task frame carries it ("NAME=VALUE", sorted by name), or why it is
  // refused: FAILED_PRECONDITION without task environments, INVALID_ARGUMENT for a name that is
  // empty or holds '=' or NUL, a value that holds NUL, or more than 64 KiB in all.
  absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> SessionEnv(
      const google::protobuf::Map<std::string, std::string>& env) const;

  // The workers registered `functions`; each gets figures of its own in `metrics`.
  void SetFunctions(std::vector<v1::FunctionInfo> functions, TaskMetrics& metrics);
  const std::vector<v1::FunctionInfo>& functions() const { return functions_; }
  bool has_functions() const { return !traits_.empty(); }

  // The function's traits if a task of `function` with `payload_type`, `gang_size` and (if
  // `several_inputs`) items or a range can run on the pool; otherwise why not.
  absl::StatusOr<const FunctionTraits*> CheckFunction(absl::string_view function,
                                                      absl::string_view payload_type,
                                                      uint32_t gang_size,
                                                      bool several_inputs) const;

  // Why `spec` cannot be accepted from `session` while the pool is in `state` (for `reason`),
  // with `reserve_bytes` to reserve for its outcome; otherwise its function's traits once the
  // pool is ready, or nullptr while booting (the functions are checked when they are known).
  absl::StatusOr<const FunctionTraits*> Validate(v1::PoolState state, absl::string_view reason,
                                                 const Session& session, const v1::TaskSpec& spec,
                                                 uint64_t reserve_bytes) const;

  // The task handed over a shared memory object that is now the service's to remove.
  bool HandsOverSharedPayload(const Session& session, const v1::TaskSpec& spec) const;

  // Fills `frame` for the task `key` of `session` from `spec` (accepted): function, inputs,
  // options and the session's environment. Moves the inputs out of `spec`.
  static void ToFrame(uint64_t key, const Session& session, v1::TaskSpec& spec,
                      wire::TaskFrame& frame);

 private:
  // The rules on gang_size, broadcast, items, range and retries that hold whatever the function.
  absl::Status CheckShape(const v1::TaskSpec& spec) const;
  // Why `spec`'s shared payload is malformed for `session`, or OK.
  absl::Status CheckSharedPayload(const Session& session, const v1::TaskSpec& spec) const;

  const int workers_;
  const absl::flat_hash_map<std::string, std::string> refused_functions_;
  const size_t max_queued_tasks_per_session_;
  const uint64_t max_unread_result_bytes_;
  const bool task_environments_;
  const std::string shared_memory_prefix_;
  std::vector<v1::FunctionInfo> functions_;
  absl::flat_hash_map<std::string, FunctionTraits> traits_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_TASK_INTAKE_H_
