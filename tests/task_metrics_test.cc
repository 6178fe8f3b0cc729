// Unit tests of TaskMetrics: counters, histogram buckets, the recent rate and the text format.
#include "server/task_metrics.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

v1::TaskOutcome Outcome(v1::TaskState state, uint64_t queue_us, uint64_t run_us,
                        std::string result = "") {
  v1::TaskOutcome outcome;
  outcome.set_state(state);
  outcome.set_queue_us(queue_us);
  outcome.set_run_us(run_us);
  outcome.set_attempts(1);
  outcome.set_result(std::move(result));
  return outcome;
}

TEST(DurationHistogramTest, AnObservationOnABoundCountsInThatBucket) {
  DurationHistogram histogram;
  histogram.Observe(10);           // le=1e-05
  histogram.Observe(11);           // le=2.5e-05
  histogram.Observe(500);          // le=0.0005
  histogram.Observe(200'000'000);  // above every bound
  std::string text;
  histogram.AppendPrometheusText("h", "f=\"x\"", text);
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"1e-05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"2.5e-05\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"0.00025\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"0.0005\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"100\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("h_bucket{f=\"x\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("h_count{f=\"x\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("h_sum{f=\"x\"} 200.001\n"));
}

TEST(TaskMetricsTest, CountsByFunctionAndEndStateWithBytes) {
  TaskMetrics metrics(kStart);
  TaskMetrics::Function& echo = metrics.AddFunction("echo");
  EXPECT_EQ(&metrics.AddFunction("echo"), &echo) << "one Function per name, never moved";
  EXPECT_NE(&echo, &metrics.other());
  metrics.Accepted(echo, 100);
  metrics.Accepted(echo, 50);
  metrics.Ended(echo, Outcome(v1::TASK_STATE_SUCCEEDED, 20, 30, std::string(100, 'r')), kStart);
  metrics.Ended(echo, Outcome(v1::TASK_STATE_FAILED, 20, 30), kStart);
  v1::TaskOutcome never_ran;
  never_ran.set_state(v1::TASK_STATE_CANCELLED);
  metrics.Ended(metrics.AddFunction("sleep"), never_ran, kStart);
  metrics.Rejected(absl::StatusCode::kNotFound);
  metrics.Rejected(absl::StatusCode::kNotFound);

  const TaskMetrics::Totals totals = metrics.EndedTotals();
  EXPECT_EQ(totals.succeeded, 1);
  EXPECT_EQ(totals.failed, 1);
  EXPECT_EQ(totals.cancelled, 1);

  std::string text;
  metrics.TakeSnapshot().AppendPrometheusText(text);
  EXPECT_THAT(text, HasSubstr("# TYPE mpigate_tasks_accepted_total counter\n"
                              "mpigate_tasks_accepted_total{function=\"echo\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("mpigate_tasks_ended_total{function=\"echo\",state=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_tasks_ended_total{function=\"echo\",state=\"failed\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("mpigate_tasks_ended_total{function=\"sleep\",state=\"cancelled\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_tasks_rejected_total{code=\"NOT_FOUND\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_task_payload_bytes_total{function=\"echo\"} 150\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_task_result_bytes_total{function=\"echo\"} 100\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_task_run_seconds_count{function=\"echo\"} 2\n"));
  // A task cancelled in the queue never ran: no queue wait or run time is observed for it.
  EXPECT_THAT(text, HasSubstr("mpigate_task_run_seconds_count{function=\"sleep\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("mpigate_task_queue_wait_seconds_count{function=\"sleep\"} 0\n"));
}

TEST(TaskMetricsTest, LabelValuesAreEscaped) {
  TaskMetrics metrics(kStart);
  metrics.Accepted(metrics.AddFunction("a\"b\\c\nd"), 0);
  std::string text;
  metrics.TakeSnapshot().AppendPrometheusText(text);
  EXPECT_THAT(text, HasSubstr("mpigate_tasks_accepted_total{function=\"a\\\"b\\\\c\\nd\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("c\nd")));
}

// Whatever names reach it, at most max_functions of them become labels: the rest count under
// "other", and the page stays the same size.
TEST(TaskMetricsTest, AtMostMaxFunctionsLabelsAndTheRestUnderOther) {
  constexpr size_t kMax = 1000;
  TaskMetrics metrics(kStart, kMax);
  std::string first_page;
  metrics.TakeSnapshot().AppendPrometheusText(first_page);
  for (int i = 0; i < 20'000; ++i) {
    TaskMetrics::Function& function = metrics.AddFunction(absl::StrCat("name.", i));
    metrics.Accepted(function, 10);
    metrics.Ended(function, Outcome(v1::TASK_STATE_SUCCEEDED, 20, 30), kStart);
  }
  const TaskMetrics::Snapshot snapshot = metrics.TakeSnapshot();
  ASSERT_EQ(snapshot.functions.size(), kMax + 1);
  uint64_t accepted = 0;
  for (const auto& [name, function] : snapshot.functions) {
    accepted += function.accepted;
    if (name != TaskMetrics::kOther) {
      EXPECT_EQ(function.accepted, 1) << name;
    }
  }
  EXPECT_EQ(accepted, 20'000u);
  EXPECT_EQ(metrics.other().accepted, 20'000u - kMax);
  EXPECT_EQ(&metrics.AddFunction("name.19999"), &metrics.other());
  EXPECT_EQ(&metrics.AddFunction("other"), &metrics.other()) << "one label \"other\"";
  std::string page;
  snapshot.AppendPrometheusText(page);
  // Some 60 lines a label, each under 120 bytes.
  EXPECT_LT(page.size(), (kMax + 1) * 60 * 120);
  EXPECT_THAT(page, HasSubstr("mpigate_tasks_accepted_total{function=\"other\"} 19000\n"));
  EXPECT_THAT(page, Not(HasSubstr("name.1000\"")));
  // A fresh one shows "other", at zero, and no other label.
  EXPECT_THAT(first_page, HasSubstr("mpigate_tasks_accepted_total{function=\"other\"} 0\n"));
}

// A snapshot is a copy: what happens after it is taken does not change it.
TEST(TaskMetricsTest, ASnapshotKeepsTheFiguresOfItsTime) {
  TaskMetrics metrics(kStart);
  TaskMetrics::Function& echo = metrics.AddFunction("echo");
  metrics.Accepted(echo, 5);
  const TaskMetrics::Snapshot before = metrics.TakeSnapshot();
  metrics.Accepted(echo, 5);
  metrics.Rejected(absl::StatusCode::kNotFound);
  std::string text;
  before.AppendPrometheusText(text);
  EXPECT_THAT(text, HasSubstr("mpigate_tasks_accepted_total{function=\"echo\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("NOT_FOUND")));
}

TEST(TaskMetricsTest, RecentRateCountsTheLastTenSecondsOnly) {
  TaskMetrics metrics(kStart);
  TaskMetrics::Function& echo = metrics.AddFunction("echo");
  // 100 tasks in the service's first second.
  for (int i = 0; i < 100; ++i) {
    metrics.Ended(echo, Outcome(v1::TASK_STATE_SUCCEEDED, 0, 0), kStart + absl::Milliseconds(i));
  }
  // Younger than the window: over the time since start.
  EXPECT_DOUBLE_EQ(metrics.RecentTasksPerSecond(kStart + absl::Seconds(2)), 50);
  // A full window that still holds that second.
  EXPECT_DOUBLE_EQ(metrics.RecentTasksPerSecond(kStart + absl::Seconds(9)), 100.0 / 9);
  // Out of the window.
  EXPECT_DOUBLE_EQ(metrics.RecentTasksPerSecond(kStart + absl::Seconds(11)), 0);
  // A second reused by the ring 16 s later starts from zero.
  metrics.Ended(echo, Outcome(v1::TASK_STATE_SUCCEEDED, 0, 0), kStart + absl::Seconds(16));
  EXPECT_DOUBLE_EQ(metrics.RecentTasksPerSecond(kStart + absl::Seconds(17)), 1.0 / 9);
}

TEST(TaskMetricsTest, BytesOfSpecsAndOutcomes) {
  v1::TaskSpec spec;
  spec.set_payload("abc");
  spec.add_items("de");
  spec.mutable_shared_payload()->set_size(1000);
  EXPECT_EQ(PayloadBytes(spec), 1005);
  v1::TaskOutcome outcome;
  outcome.set_result("xy");
  outcome.add_items()->set_result("123");
  outcome.add_items()->mutable_error()->set_message("not counted");
  outcome.mutable_shared_result()->set_size(10);
  EXPECT_EQ(ResultBytes(outcome), 15);
}

}  // namespace
}  // namespace mpigate::server
