// TaskIntake: which tasks are accepted, why others are not, and the frame an accepted one becomes,
// without a scheduler.
#include "server/task_intake.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TaskIntakeTest : public ::testing::Test {
 protected:
  TaskIntakeTest()
      : intake_({.workers = 4,
                 .refused_functions = {{"exec", "exec needs --allow-exec"}},
                 .max_queued_tasks_per_session = 2,
                 .max_unread_result_bytes = 10000,
                 .shared_memory_prefix = "/mpigate-test-"}) {
    std::vector<v1::FunctionInfo> functions(2);
    functions[0].set_name("echo");
    functions[1].set_name("allreduce");
    functions[1].set_gang(true);
    intake_.SetFunctions(std::move(functions), metrics_);
  }

  absl::StatusCode Code(const v1::TaskSpec& spec,
                        v1::PoolState state = v1::POOL_STATE_READY) const {
    return intake_.Validate(state, "why", session_, spec, 500).status().code();
  }

  static v1::TaskSpec Spec(uint64_t task_id, std::string function) {
    v1::TaskSpec spec;
    spec.set_task_id(task_id);
    spec.set_function(std::move(function));
    return spec;
  }

  TaskMetrics metrics_{absl::UnixEpoch()};
  TaskIntake intake_;
  Session session_;
};

TEST_F(TaskIntakeTest, AcceptsAKnownFunctionWithItsTraits) {
  const absl::StatusOr<const TaskIntake::FunctionTraits*> traits =
      intake_.Validate(v1::POOL_STATE_READY, "", session_, Spec(1, "allreduce"), 500);
  ASSERT_TRUE(traits.ok()) << traits.status();
  EXPECT_TRUE((*traits)->gang);
  EXPECT_EQ((*traits)->metrics->name, "allreduce");
}

TEST_F(TaskIntakeTest, LeavesTheFunctionToBeCheckedOnceThePoolIsReady) {
  const absl::StatusOr<const TaskIntake::FunctionTraits*> traits =
      intake_.Validate(v1::POOL_STATE_BOOTING, "", session_, Spec(1, "nowhere"), 500);
  ASSERT_TRUE(traits.ok()) << traits.status();
  EXPECT_EQ(*traits, nullptr);
  EXPECT_EQ(Code(Spec(1, "nowhere")), absl::StatusCode::kNotFound);
}

TEST_F(TaskIntakeTest, RefusesWhatThePoolsStateDoesNotAllow) {
  EXPECT_EQ(Code(Spec(1, "echo"), v1::POOL_STATE_DRAINING), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Code(Spec(1, "echo"), v1::POOL_STATE_BROKEN), absl::StatusCode::kFailedPrecondition);
  session_.shut_down = true;
  EXPECT_EQ(Code(Spec(1, "echo")), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TaskIntakeTest, RefusesMalformedTasks) {
  EXPECT_EQ(Code(Spec(0, "echo")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Spec(1, "")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(Spec(1, "exec")), absl::StatusCode::kPermissionDenied);
  v1::TaskSpec gang = Spec(1, "allreduce");
  gang.mutable_options()->set_gang_size(5);
  EXPECT_EQ(Code(gang), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec not_gang = Spec(1, "echo");
  not_gang.mutable_options()->set_gang_size(2);
  EXPECT_EQ(Code(not_gang), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec broadcast = Spec(1, "echo");
  broadcast.mutable_options()->set_broadcast(true);
  broadcast.mutable_range()->set_count(3);
  EXPECT_EQ(Code(broadcast), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec retries = Spec(1, "echo");
  retries.mutable_options()->set_max_retries(11);
  EXPECT_EQ(Code(retries), absl::StatusCode::kInvalidArgument);
  v1::TaskSpec typed = Spec(1, "echo");
  typed.set_payload_type("some.Message");
  EXPECT_EQ(Code(typed), absl::StatusCode::kOk);
  v1::TaskSpec empty_range = Spec(1, "echo");
  empty_range.mutable_range();
  EXPECT_EQ(Code(empty_range), absl::StatusCode::kInvalidArgument);
}

TEST_F(TaskIntakeTest, RefusesWhatTheSessionCannotTake) {
  session_.live.emplace(1, 10);
  EXPECT_EQ(Code(Spec(1, "echo")), absl::StatusCode::kAlreadyExists);
  session_.queued = 2;
  EXPECT_EQ(Code(Spec(2, "echo")), absl::StatusCode::kResourceExhausted);
  session_.queued = 1;
  session_.unread_bytes = 9000;
  session_.reserved_bytes = 500;
  // 9,000 held, 500 reserved, and 500 more would pass 10,000.
  const absl::Status status =
      intake_.Validate(v1::POOL_STATE_READY, "", session_, Spec(2, "echo"), 501).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("--max_unread_result_mb"));
  EXPECT_EQ(Code(Spec(2, "echo")), absl::StatusCode::kOk);
  session_.max_running = 1;
  v1::TaskSpec gang = Spec(2, "allreduce");
  gang.mutable_options()->set_gang_size(2);
  EXPECT_EQ(Code(gang), absl::StatusCode::kInvalidArgument);
}

TEST_F(TaskIntakeTest, TakesASharedPayloadOnlyFromASessionThatSharesMemory) {
  v1::TaskSpec spec = Spec(1, "echo");
  spec.mutable_shared_payload()->set_name("/mpigate-test-0123456789abcdef");
  EXPECT_EQ(Code(spec), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(intake_.HandsOverSharedPayload(session_, spec));
  session_.shared.enabled = true;
  EXPECT_EQ(Code(spec), absl::StatusCode::kOk);
  EXPECT_TRUE(intake_.HandsOverSharedPayload(session_, spec));
  spec.mutable_shared_payload()->set_name("/elsewhere-0123456789abcdef");
  EXPECT_EQ(Code(spec), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(intake_.HandsOverSharedPayload(session_, spec));
}

TEST_F(TaskIntakeTest, SortsASessionsEnvironmentAndRefusesMalformedNames) {
  google::protobuf::Map<std::string, std::string> env;
  env["B"] = "2";
  env["A"] = "1";
  const absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> variables =
      intake_.SessionEnv(env);
  ASSERT_TRUE(variables.ok()) << variables.status();
  EXPECT_THAT(*variables, ElementsAre("A=1", "B=2"));
  env["C=D"] = "3";
  EXPECT_EQ(intake_.SessionEnv(env).status().code(), absl::StatusCode::kInvalidArgument);

  TaskIntake shared_environment({.task_environments = false});
  EXPECT_TRUE(shared_environment.SessionEnv({}).ok());
  google::protobuf::Map<std::string, std::string> one;
  one["A"] = "1";
  EXPECT_EQ(shared_environment.SessionEnv(one).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TaskIntakeTest, MovesAnAcceptedTasksInputsIntoItsFrame) {
  session_.max_outcome_bytes = 4096;
  session_.env.Add("A=1");
  v1::TaskSpec spec = Spec(1, "echo");
  spec.set_payload("input");
  spec.mutable_options()->set_run_timeout_ms(250);
  spec.mutable_range()->set_first(10);
  spec.mutable_range()->set_count(3);
  spec.mutable_range()->set_base_seed(99);
  wire::TaskFrame frame;
  TaskIntake::ToFrame(17, session_, spec, frame);
  EXPECT_EQ(frame.task_key(), 17u);
  EXPECT_EQ(frame.function(), "echo");
  EXPECT_EQ(frame.payload(), "input");
  EXPECT_EQ(frame.run_timeout_ms(), 250u);
  EXPECT_EQ(frame.max_result_bytes(), 4096u);
  EXPECT_THAT(frame.env(), ElementsAre("A=1"));
  EXPECT_EQ(frame.range().first(), 10u);
  EXPECT_EQ(frame.range().count(), 3u);
  EXPECT_EQ(frame.range().base_seed(), 99u);
  EXPECT_TRUE(spec.payload().empty());
}

}  // namespace
}  // namespace mpigate::server
