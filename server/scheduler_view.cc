// The Scheduler's figures for observers: Status() for the live page and `mpigate top`, and
// Metrics() for a Prometheus scrape, each copied under the lock and formatted after it.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "server/scheduler.h"

namespace mpigate::server {

v1::PoolStatus Scheduler::Status() const {
  v1::PoolStatus status;
  absl::MutexLock lock(&mu_);
  status.set_workers(static_cast<uint32_t>(workers_));
  status.set_busy_workers(static_cast<uint32_t>(picker_.busy()));
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
  status.set_workers_down(static_cast<uint32_t>(picker_.down()));
  status.set_degraded_reason(degraded_);
  for (const v1::FunctionInfo& function : intake_.functions()) *status.add_functions() = function;
  std::vector<std::pair<SessionId, const Session*>> open;
  sessions_.ForEach([&open](SessionId id, const Session& session) {
    if (!session.abandoned) open.emplace_back(id, &session);
  });
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

void Scheduler::AppendPoolViewLocked(absl::Time now, v1::PoolStatus& status) const {
  view_.AppendTo(now, started_, status);
  for (int w = 0; w < workers_; ++w) {
    const WorkerPicker::Worker& worker = picker_.worker(w);
    v1::WorkerStatus& entry = *status.mutable_worker_list(w);
    entry.set_down(worker.down);
    if (worker.tasks.empty()) continue;
    entry.set_busy(true);
    entry.set_backlog(static_cast<uint32_t>(worker.tasks.size() - 1));
    entry.set_running_ms(static_cast<uint64_t>(
        std::max<int64_t>(absl::ToInt64Milliseconds(now - worker.head_started), 0)));
    const auto task = tasks_.find(worker.tasks.front());
    if (task == tasks_.end()) continue;
    entry.set_function(task->second.metrics != nullptr ? task->second.metrics->name
                                                       : TaskMetrics::kOther);
    entry.set_session_id(task->second.session);
    if (const Session* session = sessions_.Find(task->second.session); session != nullptr) {
      entry.set_client_name(session->client_name);
    }
  }
  for (const uint64_t bound : DurationHistogram::kBoundsMicros) {
    status.add_time_bucket_bounds_us(bound);
  }
  metrics_.ForEachFunction([&status](const TaskMetrics::Function& function) {
    if (function.succeeded + function.failed + function.cancelled == 0) return;
    v1::FunctionTimes& times = *status.add_function_times();
    times.set_name(function.name);
    times.set_succeeded(function.succeeded);
    times.set_failed(function.failed);
    times.set_cancelled(function.cancelled);
    times.mutable_queue_wait_counts()->Add(function.queue_wait.counts().begin(),
                                           function.queue_wait.counts().end());
    times.mutable_run_time_counts()->Add(function.run_time.counts().begin(),
                                         function.run_time.counts().end());
    times.set_queue_wait_sum_us(function.queue_wait.sum_micros());
    times.set_run_time_sum_us(function.run_time.sum_micros());
  });
}

Scheduler::MetricsSnapshot Scheduler::Metrics() const {
  MetricsSnapshot snapshot;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  const SessionTable::Census census = sessions_.Count();
  snapshot.sessions = census.open;
  snapshot.detached_sessions = census.detached;
  snapshot.workers = workers_;
  snapshot.busy_workers = picker_.busy();
  snapshot.workers_down = picker_.down();
  snapshot.workers_lost = picker_.lost();
  snapshot.queued_tasks = queued_count_;
  snapshot.uptime = now - started_;
  snapshot.tasks_per_second = metrics_.RecentTasksPerSecond(now);
  snapshot.state = pool_state_;
  snapshot.tasks = metrics_.TakeSnapshot();
  return snapshot;
}

std::string Scheduler::PrometheusText() const { return Metrics().PrometheusText(); }

}  // namespace mpigate::server
