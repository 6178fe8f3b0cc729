// PoolMetrics: what a Prometheus scrape of the gateway shows, as a value. The scheduler fills one
// in under its lock (Scheduler::Metrics); PrometheusText() formats it after the lock is released,
// so that a scrape holds the lock only while the figures are copied.
//
// Thread-safety: a plain value; no synchronisation of its own.
#ifndef MPIGATE_SERVER_POOL_METRICS_H_
#define MPIGATE_SERVER_POOL_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"
#include "server/task_metrics.h"

namespace mpigate::server {

struct PoolMetrics {
  int workers = 0;
  size_t busy_workers = 0;
  size_t workers_down = 0;
  uint64_t workers_lost = 0;
  size_t queued_tasks = 0;
  size_t sessions = 0;
  size_t detached_sessions = 0;
  absl::Duration uptime;
  double tasks_per_second = 0;
  v1::PoolState state = v1::POOL_STATE_BOOTING;
  // A copy of the tasks' counters and histograms.
  TaskMetrics::Snapshot tasks;

  // Every metric in the Prometheus text format (version 0.0.4), with HELP and TYPE lines.
  std::string PrometheusText() const;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_POOL_METRICS_H_
