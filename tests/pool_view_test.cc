// Tests of PoolView and SessionTally (server/pool_view.h), the scheduler's bookkeeping for the
// live page and `mpigate top`, and of the figures both derive (common/pool_figures.h).
#include "server/pool_view.h"

#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/pool_figures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

v1::TaskOutcome Failure(int worker, absl::StatusCode code, std::string message) {
  v1::TaskOutcome outcome;
  outcome.set_state(v1::TASK_STATE_FAILED);
  outcome.set_worker(worker);
  outcome.mutable_error()->set_code(static_cast<int>(code));
  outcome.mutable_error()->set_message(std::move(message));
  return outcome;
}

TEST(SessionTallyTest, CountsByEndStateAndRateOverTheLastTenSeconds) {
  SessionTally tally;
  const int64_t second = absl::ToUnixSeconds(kStart);
  for (int i = 0; i < 30; ++i) tally.Ended(v1::TASK_STATE_SUCCEEDED, second);
  tally.Ended(v1::TASK_STATE_FAILED, second + 5);
  tally.Ended(v1::TASK_STATE_CANCELLED, second + 5);
  v1::SessionStatus status;
  // 32 tasks over the 8 s since it opened (younger than the 10 s window).
  tally.AppendTo(kStart + absl::Seconds(8), kStart, status);
  EXPECT_EQ(status.tasks_succeeded(), 30u);
  EXPECT_EQ(status.tasks_failed(), 1u);
  EXPECT_EQ(status.tasks_cancelled(), 1u);
  EXPECT_DOUBLE_EQ(status.recent_tasks_per_second(), 4.0);
  // At 10 s the window (the current second and the 9 before) has left the first second behind.
  tally.AppendTo(kStart + absl::Seconds(10), kStart, status);
  EXPECT_DOUBLE_EQ(status.recent_tasks_per_second(), 2.0 / 9);
  // A minute later the window holds none of them.
  tally.AppendTo(kStart + absl::Minutes(1), kStart, status);
  EXPECT_EQ(status.recent_tasks_per_second(), 0);
}

TEST(PoolViewTest, WorkersKeepTheirProcessAndTally) {
  PoolView view(2);
  view.SetProcess(0, "node1", 100, 101);
  view.SetProcess(1, "node2", 200, 0);
  view.Reported(0, /*failed=*/false, 101);
  view.Reported(0, /*failed=*/true, 0);
  // A fresh runner names itself in its first result.
  view.Reported(1, /*failed=*/false, 202);
  view.Reported(7, /*failed=*/false, 1);  // Out of range: ignored.
  v1::PoolStatus status;
  view.AppendTo(kStart, kStart, status);
  ASSERT_EQ(status.worker_list_size(), 2);
  const v1::WorkerStatus& first = status.worker_list(0);
  EXPECT_EQ(first.host(), "node1");
  EXPECT_EQ(first.pid(), 100);
  EXPECT_EQ(first.runner_pid(), 101);
  EXPECT_EQ(first.tasks_done(), 2u);
  EXPECT_EQ(first.tasks_failed(), 1u);
  EXPECT_EQ(status.worker_list(1).runner_pid(), 202);
  EXPECT_EQ(status.worker_list(1).tasks_done(), 1u);
}

TEST(PoolViewTest, FailuresComeNewestFirstBoundedAndCut) {
  PoolView view(1);
  for (size_t i = 0; i < PoolView::kMaxFailures + 5; ++i) {
    view.Failed(kStart + absl::Milliseconds(i), 3, "alpha", i, "fail",
                Failure(0, absl::StatusCode::kUnknown, "failure " + std::to_string(i)));
  }
  // A long message, and a client name, cut at a character's start: "é" is two bytes.
  const std::string long_message = "x" + std::string(PoolView::kMaxMessageBytes, 'e') + "tail";
  std::string name(PoolView::kMaxClientNameBytes - 1, 'n');
  name += "é";
  view.Failed(kStart + absl::Seconds(1), 4, name, 99, "other",
              Failure(-1, absl::StatusCode::kNotFound, long_message));
  v1::PoolStatus status;
  view.AppendTo(kStart + absl::Seconds(2), kStart, status);
  ASSERT_EQ(status.recent_failures_size(), static_cast<int>(PoolView::kMaxFailures));
  const v1::FailureRecord& newest = status.recent_failures(0);
  EXPECT_EQ(newest.unix_ms(), absl::ToUnixMillis(kStart + absl::Seconds(1)));
  EXPECT_EQ(newest.session_id(), 4u);
  EXPECT_EQ(newest.task_id(), 99u);
  EXPECT_EQ(newest.function(), "other");
  EXPECT_EQ(newest.worker(), -1);
  EXPECT_EQ(newest.code(), "NOT_FOUND");
  EXPECT_EQ(newest.message(), long_message.substr(0, PoolView::kMaxMessageBytes));
  EXPECT_EQ(newest.client_name(), std::string(PoolView::kMaxClientNameBytes - 1, 'n'));
  EXPECT_EQ(status.recent_failures(1).message(), "failure 24");
  EXPECT_EQ(status.recent_failures(1).code(), "UNKNOWN");
  EXPECT_EQ(status.recent_failures(PoolView::kMaxFailures - 1).message(), "failure 6");
}

TEST(PoolViewTest, TasksEndedPerSecondGoBackFiveMinutesAtMost) {
  PoolView view(1);
  const int64_t start = absl::ToUnixSeconds(kStart);
  view.Ended(start);
  view.Ended(start + 2);
  view.Ended(start + 2);
  v1::PoolStatus young;
  view.AppendTo(kStart + absl::Milliseconds(3500), kStart, young);
  EXPECT_THAT(young.tasks_ended_per_second(), ElementsAre(1, 0, 2, 0));
  view.Ended(start + 1000);
  v1::PoolStatus old;
  view.AppendTo(kStart + absl::Seconds(1000), kStart, old);
  ASSERT_EQ(old.tasks_ended_per_second_size(), static_cast<int>(PoolView::kHistorySeconds));
  EXPECT_EQ(old.tasks_ended_per_second(PoolView::kHistorySeconds - 1), 1u);
  // Seconds of the ring overwritten since count nothing.
  EXPECT_EQ(old.tasks_ended_per_second(0), 0u);
}

TEST(CutUtf8Test, NeverEndsInsideACharacter) {
  EXPECT_EQ(CutUtf8("abc", 5), "abc");
  EXPECT_EQ(CutUtf8("abcdef", 3), "abc");
  EXPECT_EQ(CutUtf8("ab€", 3), "ab");  // € is three bytes.
  EXPECT_EQ(CutUtf8("ab€", 4), "ab");
  EXPECT_EQ(CutUtf8("ab€x", 5), "ab€");
}

TEST(PoolFiguresTest, QuantilesAreBucketUpperBounds) {
  google::protobuf::RepeatedField<uint64_t> bounds;
  for (const uint64_t bound : {10, 100, 1000}) bounds.Add(bound);
  google::protobuf::RepeatedField<uint64_t> counts;
  EXPECT_EQ(QuantileMicros(counts, bounds, 0.5), std::nullopt);
  for (const uint64_t count : {50, 40, 9, 1}) counts.Add(count);
  EXPECT_EQ(QuantileMicros(counts, bounds, 0.5), 10u);
  EXPECT_EQ(QuantileMicros(counts, bounds, 0.51), 100u);
  EXPECT_EQ(QuantileMicros(counts, bounds, 0.99), 1000u);
  // The last bucket is above every bound.
  EXPECT_EQ(QuantileMicros(counts, bounds, 1.0), 1000u);
  EXPECT_EQ(FormatQuantile(1000u, 1000), ">1.00 ms");
  EXPECT_EQ(FormatQuantile(100u, 1000), "≤100 µs");
  EXPECT_EQ(FormatQuantile(std::nullopt, 1000), "-");
  EXPECT_EQ(FormatMicros(12'500), "12.5 ms");
  EXPECT_EQ(FormatMicros(3'200'000), "3.20 s");
  EXPECT_EQ(FormatMicros(125'000'000), "2m05s");
  EXPECT_EQ(FormatMicros(3'720'000'000), "1h02m");
  EXPECT_EQ(FormatRate(2.54), "2.5");
  EXPECT_EQ(FormatRate(127.6), "128");
}

TEST(PoolFiguresTest, BusiestFirst) {
  v1::PoolStatus status;
  for (int i = 0; i < 4; ++i) status.add_worker_list()->set_worker(static_cast<uint32_t>(i));
  status.mutable_worker_list(0)->set_down(true);
  status.mutable_worker_list(2)->set_busy(true);
  status.mutable_worker_list(2)->set_running_ms(5);
  status.mutable_worker_list(3)->set_busy(true);
  status.mutable_worker_list(3)->set_running_ms(50);
  std::vector<uint32_t> order;
  for (const v1::WorkerStatus* worker : WorkersBusiestFirst(status)) {
    order.push_back(worker->worker());
  }
  EXPECT_THAT(order, ElementsAre(3, 2, 1, 0));
  for (const auto& [id, running, queued] :
       {std::tuple<uint64_t, uint64_t, uint64_t>{1, 0, 0}, {2, 1, 0}, {3, 1, 9}}) {
    v1::SessionStatus& session = *status.add_session_list();
    session.set_session_id(id);
    session.set_running_tasks(running);
    session.set_queued_tasks(queued);
  }
  std::vector<uint64_t> sessions;
  for (const v1::SessionStatus* session : SessionsBusiestFirst(status)) {
    sessions.push_back(session->session_id());
  }
  EXPECT_THAT(sessions, ElementsAre(3, 2, 1));
}

}  // namespace
}  // namespace mpigate::server
