// The Scheduler's service lifecycle: the pool's state (booting, ready, broken, draining) and its
// changes, and workers taken out of service and back, apart from the dispatch in scheduler.cc.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/scheduler.h"

namespace mpigate::server {

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
  const std::vector<SessionId> ids = sessions_.Ids();
  for (const SessionId id : ids) sessions_.at(id).pool_changed = true;
  for (const SessionId id : ids) MaybeNotifyLocked(id, notifications);
}

void Scheduler::PoolReady(std::vector<v1::FunctionInfo> functions) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (pool_state_ != v1::POOL_STATE_BOOTING) return;
    intake_.SetFunctions(std::move(functions), metrics_);
    std::vector<std::pair<TaskKey, absl::Status>> unfit;
    for (auto& [key, task] : tasks_) {
      const absl::StatusOr<const FunctionTraits*> traits =
          intake_.CheckFunction(task.frame.function(), task.payload_type, task.gang_size,
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
    picker_.MakeAllIdle();
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
    for (const SessionId id : sessions_.Ids()) {
      Session& session = sessions_.at(id);
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

void Scheduler::Drain(absl::string_view reason) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (pool_state_ == v1::POOL_STATE_DRAINING) return;
    const std::string why = absl::StrCat("cancelled: the service is draining (", reason, ")");
    // Ids first: MaybeNotifyLocked may erase abandoned sessions.
    const std::vector<SessionId> ids = sessions_.Ids();
    for (const SessionId id : ids) {
      Session& session = sessions_.at(id);
      session.shut_down = true;
      CancelAllQueuedLocked(session, why);
    }
    for (const SessionId id : ids) MaybeNotifyLocked(id, notifications);
    SetPoolStateLocked(v1::POOL_STATE_DRAINING, reason, notifications);
  }
  Notify(notifications);
}

bool Scheduler::AwaitNoRunningTasks(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const auto none_running = [this]()
                                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return picker_.busy() == 0; };
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
  if (!intake_.has_functions() && pool_state_ == v1::POOL_STATE_BROKEN) {
    return absl::FailedPreconditionError(absl::StrCat("BrokenExecutor: ", pool_reason_));
  }
  return intake_.functions();
}

bool Scheduler::TakeIdleWorker(int worker) {
  absl::MutexLock lock(&mu_);
  if (worker < 0 || worker >= workers_) return false;
  return picker_.TakeIdle(worker);
}

void Scheduler::WorkerUp(int worker, int job) {
  absl::MutexLock lock(&mu_);
  if (worker < 0 || worker >= workers_) return;
  // A new process: what was learnt of the old one's run times no longer holds.
  picker_.Up(worker, job);
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

}  // namespace mpigate::server
