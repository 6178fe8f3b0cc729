// OutcomeBuilder: outcomes from workers' results, and outcomes fitted to what a session may send
// and hold, without a scheduler.
#include "server/outcome_builder.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kResourceExhausted = static_cast<int>(absl::StatusCode::kResourceExhausted);

wire::ResultFrame Failed(absl::StatusCode code, std::string message, bool runner_lost = false) {
  wire::ResultFrame result;
  result.mutable_error()->set_code(static_cast<int>(code));
  result.mutable_error()->set_message(std::move(message));
  result.set_runner_lost(runner_lost);
  return result;
}

wire::ResultFrame Succeeded(std::string bytes, uint64_t run_us = 0) {
  wire::ResultFrame result;
  result.set_result(std::move(bytes));
  result.set_run_us(run_us);
  return result;
}

class OutcomeBuilderTest : public ::testing::Test {
 protected:
  std::vector<std::string> released_;
  // Four workers, 1 MiB messages, 64 KiB of unread outcomes.
  OutcomeBuilder builder_{4, 1 << 20, 64 << 10,
                          [this](const std::string& name) { released_.push_back(name); }};
};

TEST_F(OutcomeBuilderTest, AnInterruptedTaskThatGivesUpIsCancelledOthersFail) {
  wire::ResultFrame result = Failed(absl::StatusCode::kCancelled, "stopped");
  v1::TaskOutcome interrupted;
  OutcomeBuilder::FromResult(result, /*interrupted=*/true, interrupted);
  EXPECT_EQ(interrupted.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(interrupted.error().message(), "stopped");
  result = Failed(absl::StatusCode::kCancelled, "stopped");
  v1::TaskOutcome not_interrupted;
  OutcomeBuilder::FromResult(result, /*interrupted=*/false, not_interrupted);
  EXPECT_EQ(not_interrupted.state(), v1::TASK_STATE_FAILED);
}

TEST_F(OutcomeBuilderTest, MovesAResultAndItsRunTime) {
  wire::ResultFrame result = Succeeded("bytes", 42);
  v1::TaskOutcome outcome;
  OutcomeBuilder::FromResult(result, false, outcome);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), "bytes");
  EXPECT_EQ(outcome.run_us(), 42u);
}

TEST_F(OutcomeBuilderTest, AGangTellsTheLowestRankLostWithItsWorkerOverEarlierFailures) {
  std::vector<wire::ResultFrame> results;
  results.push_back(Failed(absl::StatusCode::kInternal, "collective broken"));
  results.push_back(Succeeded("", 70));
  results.push_back(Failed(absl::StatusCode::kAborted, "worker 6 died", /*runner_lost=*/true));
  const v1::TaskOutcome outcome = OutcomeBuilder::FromGroup(results, {4, 5, 6}, false, false);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().message(), "gang rank 2 (worker 6): worker 6 died");
  EXPECT_EQ(outcome.run_us(), 70u);
}

TEST_F(OutcomeBuilderTest, AGangSucceedsWithRankZerosResult) {
  std::vector<wire::ResultFrame> results;
  results.push_back(Succeeded("rank 0"));
  results.push_back(Succeeded("rank 1"));
  const v1::TaskOutcome outcome = OutcomeBuilder::FromGroup(results, {0, 1}, false, false);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), "rank 0");
}

TEST_F(OutcomeBuilderTest, ABroadcastHasOneItemPerWorker) {
  std::vector<wire::ResultFrame> results;
  results.push_back(Succeeded("a"));
  results.push_back(Failed(absl::StatusCode::kInternal, "b failed"));
  const v1::TaskOutcome outcome = OutcomeBuilder::FromGroup(results, {0, 1}, true, false);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  ASSERT_EQ(outcome.items_size(), 2);
  EXPECT_EQ(outcome.items(0).result(), "a");
  EXPECT_EQ(outcome.items(1).error().message(), "b failed");
}

TEST_F(OutcomeBuilderTest, AStreamCarriesTheSmallerLimitLessFraming) {
  EXPECT_EQ(builder_.MaxOutcomeBytes(0), (1u << 20) - 64);
  EXPECT_EQ(builder_.MaxOutcomeBytes(1000), 1000u - 64);
  EXPECT_EQ(builder_.MaxOutcomeBytes(2 << 20), (1u << 20) - 64);
  OutcomeBuilder unlimited(1, 0, 0, [](const std::string&) {});
  EXPECT_EQ(unlimited.MaxOutcomeBytes(0), 0u);
}

TEST_F(OutcomeBuilderTest, AnOutcomeTooLargeForTheStreamFailsAndReleasesItsSharedResult) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(9);
  outcome.set_state(v1::TASK_STATE_SUCCEEDED);
  outcome.add_items()->set_result(std::string(2000, 'x'));
  outcome.mutable_shared_result()->set_name("/mpigate-0123456789abcdef");
  EXPECT_FALSE(builder_.FitToStream(0, outcome.ByteSizeLong(), outcome));
  EXPECT_FALSE(builder_.FitToStream(5000, outcome.ByteSizeLong(), outcome));
  ASSERT_TRUE(builder_.FitToStream(1000, outcome.ByteSizeLong(), outcome));
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), kResourceExhausted);
  EXPECT_THAT(outcome.error().message(), HasSubstr("outcome of task 9"));
  EXPECT_THAT(outcome.items(), IsEmpty());
  EXPECT_FALSE(outcome.has_shared_result());
  EXPECT_THAT(released_, ElementsAre("/mpigate-0123456789abcdef"));
}

TEST_F(OutcomeBuilderTest, AnOutcomePastTheUnreadBoundFailsWithinWhatItsTaskReserved) {
  v1::TaskOutcome small;
  small.set_task_id(1);
  small.set_result("ok");
  const size_t held = builder_.FitToSession(0, 0, 0, small);
  EXPECT_EQ(small.result(), "ok");
  EXPECT_EQ(held, OutcomeBuilder::HeldBytes(small));

  v1::TaskOutcome large;
  large.set_task_id(2);
  large.set_state(v1::TASK_STATE_SUCCEEDED);
  large.set_result(std::string(40 << 10, 'x'));
  const size_t replaced = builder_.FitToSession(0, 30 << 10, 0, large);
  EXPECT_EQ(large.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(large.error().code(), kResourceExhausted);
  EXPECT_THAT(large.error().message(), HasSubstr("--max_unread_result_mb"));
  EXPECT_EQ(replaced, OutcomeBuilder::HeldBytes(large));
  EXPECT_LE(replaced, builder_.ReserveBytes(false));
  EXPECT_LT(builder_.ReserveBytes(false), builder_.ReserveBytes(true));
}

TEST_F(OutcomeBuilderTest, AFailureRecordsItsCodeAndWhere) {
  v1::TaskOutcome outcome =
      OutcomeBuilder::Failure(v1::TASK_STATE_CANCELLED, absl::StatusCode::kCancelled, "why");
  OutcomeBuilder::SetWorkers({3, 1}, /*group=*/true, outcome);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(outcome.error().code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(outcome.error().message(), "why");
  EXPECT_EQ(outcome.worker(), 3);
  EXPECT_THAT(outcome.workers(), ElementsAre(3, 1));
}

}  // namespace
}  // namespace mpigate::server
