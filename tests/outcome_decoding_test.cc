// Outcome decoding (client/internal/outcome_decoding.h): every kind of answer the service gives
// about a task, and wire codes that are not canonical.
#include "client/internal/outcome_decoding.h"

#include <gtest/gtest.h>

namespace mpigate::internal {
namespace {

v1::TaskOutcome Outcome(v1::TaskState state) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(7);
  outcome.set_state(state);
  outcome.set_attempts(2);
  return outcome;
}

TEST(OutcomeDecodingTest, SucceededCarriesResultItemsAndAttempts) {
  v1::TaskOutcome outcome = Outcome(v1::TASK_STATE_SUCCEEDED);
  outcome.set_result("out");
  outcome.add_items()->set_result("a");
  v1::TaskError* error = outcome.add_items()->mutable_error();
  error->set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  error->set_message("bad item");
  error->set_exception_type("ValueError");
  Ending ending = EndingOf(outcome);
  EXPECT_EQ(ending.state, FutureState::kFinished);
  EXPECT_EQ(ending.attempts, 2u);
  ASSERT_TRUE(ending.result.ok());
  EXPECT_EQ(*ending.result, "out");
  ASSERT_EQ(ending.items.size(), 2u);
  EXPECT_EQ(*ending.items[0], "a");
  EXPECT_EQ(ending.items[1].status(), absl::InvalidArgumentError("ValueError: bad item"));
}

TEST(OutcomeDecodingTest, FailedCarriesCodeAndExceptionType) {
  v1::TaskOutcome outcome = Outcome(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  outcome.mutable_error()->set_message("too slow");
  Ending ending = EndingOf(outcome);
  EXPECT_EQ(ending.state, FutureState::kFinished);
  EXPECT_EQ(ending.result.status(), absl::DeadlineExceededError("too slow"));
  outcome.mutable_error()->set_exception_type("TimeoutError");
  EXPECT_EQ(EndingOf(outcome).result.status(),
            absl::DeadlineExceededError("TimeoutError: too slow"));
}

TEST(OutcomeDecodingTest, AFailureWithCodeZeroOrOutOfRangeIsUnknownNotSuccess) {
  v1::TaskOutcome outcome = Outcome(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->set_message("m");
  EXPECT_EQ(EndingOf(outcome).result.status(), absl::UnknownError("m"));
  outcome.mutable_error()->set_code(99);
  EXPECT_EQ(EndingOf(outcome).result.status(), absl::UnknownError("m"));
  outcome.mutable_error()->set_code(-3);
  EXPECT_EQ(EndingOf(outcome).result.status(), absl::UnknownError("m"));
}

TEST(OutcomeDecodingTest, CancelledIsCancelledEvenWithCodeZero) {
  v1::TaskOutcome outcome = Outcome(v1::TASK_STATE_CANCELLED);
  outcome.mutable_error()->set_message("cancelled by the client");
  Ending ending = EndingOf(outcome);
  EXPECT_EQ(ending.state, FutureState::kCancelled);
  EXPECT_EQ(ending.result.status(), absl::CancelledError("cancelled by the client"));
}

TEST(OutcomeDecodingTest, AnOutcomeWithNoEndStateIsInternal) {
  v1::TaskOutcome outcome = Outcome(v1::TASK_STATE_UNSPECIFIED);
  Ending ending = EndingOf(outcome);
  EXPECT_EQ(ending.state, FutureState::kFinished);
  EXPECT_EQ(ending.result.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(ending.result.status().message().find("task 7"), absl::string_view::npos);
}

TEST(OutcomeDecodingTest, RejectionsKeepTheirCode) {
  v1::TaskRejection rejection;
  rejection.set_task_id(3);
  rejection.set_code(static_cast<int>(absl::StatusCode::kNotFound));
  rejection.set_message("no such function");
  Ending ending = EndingOf(rejection);
  EXPECT_EQ(ending.state, FutureState::kFinished);
  EXPECT_EQ(ending.result.status(), absl::NotFoundError("no such function"));
  rejection.set_code(0);
  EXPECT_EQ(EndingOf(rejection).result.status().code(), absl::StatusCode::kUnknown);
}

TEST(OutcomeDecodingTest, CancelledBeforeStartNamesTheTask) {
  Ending ending = CancelledBeforeStart(12);
  EXPECT_EQ(ending.state, FutureState::kCancelled);
  EXPECT_EQ(ending.result.status(),
            absl::CancelledError("task 12 was cancelled before it started"));
}

TEST(OutcomeDecodingTest, AMissingSharedResultIsAnErrorNotACrash) {
  v1::SharedBytes shared;
  shared.set_name("/mpigate-test-no-such-object");
  shared.set_size(10);
  Ending ending;
  ReadSharedResult(shared, ending);
  EXPECT_FALSE(ending.result.ok());
  shared.set_size(64 << 20);  // Too large to copy: mapped, and that fails too.
  Ending large;
  ReadSharedResult(shared, large);
  EXPECT_FALSE(large.result.ok());
  EXPECT_FALSE(large.shared_result.has_value());
}

}  // namespace
}  // namespace mpigate::internal
