// Scheduler::AppendPoolViewLocked: PoolStatus fields 20-59, for the live page and `mpigate top`,
// apart from the scheduling logic in scheduler.cc.
#include <algorithm>
#include <cstdint>

#include "server/scheduler.h"

namespace mpigate::server {

void Scheduler::AppendPoolViewLocked(absl::Time now, v1::PoolStatus& status) const {
  view_.AppendTo(now, started_, status);
  for (size_t w = 0; w < worker_state_.size(); ++w) {
    const Worker& worker = worker_state_[w];
    v1::WorkerStatus& entry = *status.mutable_worker_list(static_cast<int>(w));
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
    if (const auto session = sessions_.find(task->second.session); session != sessions_.end()) {
      entry.set_client_name(session->second.client_name);
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

}  // namespace mpigate::server
