// PoolMetrics::PrometheusText: the pool's gauges, its state as one labelled series, and the
// tasks' figures after them.
#include "server/pool_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PoolMetricsTest, WritesEachGaugeWithHelpAndType) {
  PoolMetrics metrics;
  metrics.workers = 4;
  metrics.busy_workers = 3;
  metrics.workers_down = 1;
  metrics.workers_lost = 7;
  metrics.queued_tasks = 12;
  metrics.sessions = 2;
  metrics.detached_sessions = 1;
  metrics.uptime = absl::Milliseconds(1500);
  metrics.tasks_per_second = 2.25;
  const std::string text = metrics.PrometheusText();
  EXPECT_THAT(text, HasSubstr("# HELP mpigate_workers Workers in the pool.\n"
                              "# TYPE mpigate_workers gauge\nmpigate_workers 4\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_workers_busy 3\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_workers_down 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE mpigate_workers_lost_total counter\n"
                              "mpigate_workers_lost_total 7\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_tasks_queued 12\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_sessions 2\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_sessions_detached 1\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_uptime_seconds 1.500\n"));
  EXPECT_THAT(text, HasSubstr("\nmpigate_tasks_per_second 2.250\n"));
}

TEST(PoolMetricsTest, MarksOnlyTheCurrentStateWithOne) {
  PoolMetrics metrics;
  metrics.state = v1::POOL_STATE_DRAINING;
  const std::string text = metrics.PrometheusText();
  EXPECT_THAT(text, HasSubstr("mpigate_pool_state{state=\"booting\"} 0\n"
                              "mpigate_pool_state{state=\"ready\"} 0\n"
                              "mpigate_pool_state{state=\"broken\"} 0\n"
                              "mpigate_pool_state{state=\"draining\"} 1\n"));
}

TEST(PoolMetricsTest, AppendsTheTasksFigures) {
  TaskMetrics tasks(absl::UnixEpoch());
  tasks.Rejected(absl::StatusCode::kNotFound);
  PoolMetrics metrics;
  EXPECT_THAT(metrics.PrometheusText(), Not(HasSubstr("mpigate_tasks_rejected_total{")));
  metrics.tasks = tasks.TakeSnapshot();
  EXPECT_THAT(metrics.PrometheusText(), HasSubstr("mpigate_tasks_rejected_total{"));
}

}  // namespace
}  // namespace mpigate::server
