#include "worker/task_runner.h"

#include <atomic>
#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"
#include "worker/builtins.h"
#include "worker/registry.h"

namespace mpigate::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

int Code(absl::StatusCode code) { return static_cast<int>(code); }

absl::Status Register(FunctionRegistry& registry, absl::string_view name, TaskFunction function) {
  return registry.Add({std::string(name), "a test function", "", "", std::move(function)});
}

wire::TaskFrame Frame(uint64_t key, absl::string_view function, absl::string_view payload) {
  wire::TaskFrame frame;
  frame.set_task_key(key);
  frame.set_function(std::string(function));
  frame.set_payload(std::string(payload));
  return frame;
}

class TaskRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(RegisterBuiltins(registry_), absl::OkStatus()); }

  wire::ResultFrame Run(absl::string_view function, absl::string_view payload) {
    return RunTask(registry_, context_, Frame(11, function, payload));
  }

  FunctionRegistry registry_;
  TaskContext context_{/*rank=*/2, /*pool_size=*/4};
};

TEST_F(TaskRunnerTest, BuiltinsAreRegisteredSortedByName) {
  std::vector<std::string> names;
  for (const auto& [name, entry] : registry_.definitions()) {
    names.push_back(name);
    EXPECT_FALSE(entry.description.empty()) << name;
  }
  EXPECT_THAT(names, ElementsAre("echo", "fail", "getcwd", "getenv", "setenv", "sleep", "spin"));
}

TEST_F(TaskRunnerTest, EchoReturnsItsInput) {
  const std::string payload("bin\0ary", 7);
  const wire::ResultFrame result = Run("echo", payload);
  EXPECT_EQ(result.task_key(), 11u);
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kResult);
  EXPECT_EQ(result.result(), payload);
  EXPECT_THAT(result.items(), IsEmpty());
}

TEST_F(TaskRunnerTest, SleepZeroReturnsEmptyResult) {
  const wire::ResultFrame result = Run("sleep", "0");
  // An empty result is still a result: the oneof case must be set.
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kResult);
  EXPECT_EQ(result.result(), "");
}

TEST_F(TaskRunnerTest, SpinReturnsRoundCount) {
  const wire::ResultFrame result = Run("spin", "1");
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kResult);
  uint64_t rounds = 0;
  EXPECT_TRUE(absl::SimpleAtoi(result.result(), &rounds)) << result.result();
  EXPECT_GT(rounds, 0u);
}

TEST_F(TaskRunnerTest, FailIsUnknownWithInputAsMessage) {
  const wire::ResultFrame result = Run("fail", "it broke");
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(result.error().message(), "it broke");
  // A returned status is not an exception.
  EXPECT_EQ(result.error().exception_type(), "");
}

TEST_F(TaskRunnerTest, SleepWithBadInputIsInvalidArgument) {
  for (const absl::string_view input : {"soon", "-5", ""}) {
    const wire::ResultFrame result = Run("sleep", input);
    ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError) << input;
    EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kInvalidArgument)) << input;
    EXPECT_THAT(result.error().message(), HasSubstr("milliseconds")) << input;
  }
}

TEST_F(TaskRunnerTest, SpinWithBadInputIsInvalidArgument) {
  const wire::ResultFrame result = Run("spin", "1.5");
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kInvalidArgument));
}

TEST_F(TaskRunnerTest, UnknownFunctionIsNotFound) {
  const wire::ResultFrame result = Run("no_such_function", "x");
  EXPECT_EQ(result.task_key(), 11u);
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kNotFound));
  EXPECT_THAT(result.error().message(), HasSubstr("no_such_function"));
}

TEST_F(TaskRunnerTest, StdExceptionKeepsTypeAndMessage) {
  ASSERT_EQ(Register(registry_, "throws",
                     [](const TaskContext&, absl::string_view) -> absl::StatusOr<std::string> {
                       throw std::invalid_argument("bad input: 7");
                     }),
            absl::OkStatus());
  const wire::ResultFrame result = Run("throws", "");
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(result.error().message(), "bad input: 7");
  EXPECT_EQ(result.error().exception_type(), "std::invalid_argument");
}

TEST_F(TaskRunnerTest, NonStdExceptionReportsItsType) {
  ASSERT_EQ(Register(registry_, "throws_int",
                     [](const TaskContext&, absl::string_view) -> absl::StatusOr<std::string> {
                       throw 42;
                     }),
            absl::OkStatus());
  const wire::ResultFrame result = Run("throws_int", "");
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(result.error().exception_type(), "int");
  EXPECT_FALSE(result.error().message().empty());
}

TEST_F(TaskRunnerTest, FunctionSeesItsContext) {
  ASSERT_EQ(Register(registry_, "whoami",
                     [](const TaskContext& context, absl::string_view) {
                       return absl::StatusOr<std::string>(
                           absl::StrCat(context.rank(), "/", context.pool_size()));
                     }),
            absl::OkStatus());
  EXPECT_EQ(Run("whoami", "").result(), "2/4");
}

TEST_F(TaskRunnerTest, ChunkRunsEachItemOnItsOwn) {
  // Succeeds on digits, returns a status on letters, throws on anything else.
  ASSERT_EQ(
      Register(registry_, "classify",
               [](const TaskContext&, absl::string_view input) -> absl::StatusOr<std::string> {
                 int value = 0;
                 if (absl::SimpleAtoi(input, &value)) return std::string(input) + "!";
                 if (!input.empty() && std::isalpha(static_cast<unsigned char>(input[0]))) {
                   return absl::OutOfRangeError(absl::StrCat("letter ", input));
                 }
                 throw std::runtime_error("neither");
               }),
      absl::OkStatus());
  wire::TaskFrame frame = Frame(5, "classify", "payload is ignored for a chunk");
  for (const char* item : {"1", "x", "?", "22"}) frame.add_items(item);

  const wire::ResultFrame result = RunTask(registry_, context_, frame);
  EXPECT_EQ(result.task_key(), 5u);
  // A chunk reports per item, never as a whole.
  EXPECT_EQ(result.outcome_case(), wire::ResultFrame::OUTCOME_NOT_SET);
  ASSERT_EQ(result.items_size(), 4);

  ASSERT_EQ(result.items(0).outcome_case(), wire::ItemResult::kResult);
  EXPECT_EQ(result.items(0).result(), "1!");

  ASSERT_EQ(result.items(1).outcome_case(), wire::ItemResult::kError);
  EXPECT_EQ(result.items(1).error().code(), Code(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(result.items(1).error().message(), "letter x");
  EXPECT_EQ(result.items(1).error().exception_type(), "");

  ASSERT_EQ(result.items(2).outcome_case(), wire::ItemResult::kError);
  EXPECT_EQ(result.items(2).error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(result.items(2).error().message(), "neither");
  EXPECT_EQ(result.items(2).error().exception_type(), "std::runtime_error");

  ASSERT_EQ(result.items(3).outcome_case(), wire::ItemResult::kResult);
  EXPECT_EQ(result.items(3).result(), "22!");
}

TEST_F(TaskRunnerTest, ChunkOfBuiltinWithBadItem) {
  wire::TaskFrame frame = Frame(6, "sleep", "");
  for (const char* item : {"0", "later", "0"}) frame.add_items(item);
  const wire::ResultFrame result = RunTask(registry_, context_, frame);
  ASSERT_EQ(result.items_size(), 3);
  EXPECT_EQ(result.items(0).outcome_case(), wire::ItemResult::kResult);
  ASSERT_EQ(result.items(1).outcome_case(), wire::ItemResult::kError);
  EXPECT_EQ(result.items(1).error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(result.items(2).outcome_case(), wire::ItemResult::kResult);
}

TEST(FunctionRegistryTest, DuplicateNameIsAlreadyExists) {
  FunctionRegistry registry;
  ASSERT_EQ(RegisterBuiltins(registry), absl::OkStatus());
  const absl::Status status = Register(registry, "echo", [](const TaskContext&, absl::string_view) {
    return absl::StatusOr<std::string>("second");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("echo"));
  // The first registration wins.
  EXPECT_EQ(RunTask(registry, TaskContext(0, 1), Frame(1, "echo", "hi")).result(), "hi");
  // Registering the builtins twice fails the same way.
  EXPECT_EQ(RegisterBuiltins(registry).code(), absl::StatusCode::kAlreadyExists);
}

TEST(FunctionRegistryTest, EmptyNameOrFunctionIsInvalidArgument) {
  FunctionRegistry registry;
  EXPECT_EQ(Register(registry, "",
                     [](const TaskContext&, absl::string_view) {
                       return absl::StatusOr<std::string>("");
                     })
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Register(registry, "empty", TaskFunction()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry.definitions().empty());
}

TEST(FunctionRegistryTest, FindReturnsNullForUnknownName) {
  FunctionRegistry registry;
  ASSERT_EQ(RegisterBuiltins(registry), absl::OkStatus());
  ASSERT_NE(registry.Find("echo"), nullptr);
  EXPECT_EQ(registry.Find("echo")->description, "Returns its input unchanged.");
  EXPECT_EQ(registry.Find("ech"), nullptr);
}

// The task API as a library author uses it: typed functions, the cancellation flag, progress.

absl::StatusOr<google::protobuf::Int64Value> Square(const TaskContext&,
                                                    const google::protobuf::Int64Value& request) {
  google::protobuf::Int64Value response;
  response.set_value(request.value() * request.value());
  return response;
}

TEST(TypedTaskTest, ParsesTheRequestAndSerializesTheResponse) {
  FunctionRegistry registry;
  ASSERT_EQ(registry.Add(TypedTask<google::protobuf::Int64Value, google::protobuf::Int64Value>(
                "square", "Squares an Int64Value.", Square)),
            absl::OkStatus());
  const TaskDefinition& definition = *registry.Find("square");
  EXPECT_EQ(definition.request_type, "google.protobuf.Int64Value");
  EXPECT_EQ(definition.response_type, "google.protobuf.Int64Value");

  google::protobuf::Int64Value request;
  request.set_value(-12);
  const wire::ResultFrame result =
      RunTask(registry, TaskContext(0, 1), Frame(1, "square", request.SerializeAsString()));
  google::protobuf::Int64Value response;
  ASSERT_TRUE(response.ParseFromString(result.result())) << result.DebugString();
  EXPECT_EQ(response.value(), 144);
}

TEST(TypedTaskTest, InputThatIsNotTheRequestTypeIsInvalidArgument) {
  FunctionRegistry registry;
  ASSERT_EQ(registry.Add(TypedTask<google::protobuf::Int64Value, google::protobuf::Int64Value>(
                "square", "Squares an Int64Value.", Square)),
            absl::OkStatus());
  const wire::ResultFrame result =
      RunTask(registry, TaskContext(0, 1), Frame(1, "square", "\xff\xff not protobuf"));
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(result.error().message(), HasSubstr("google.protobuf.Int64Value"));
}

TEST(TaskContextTest, SeesItsWorkerAndNoFlagByDefault) {
  const TaskContext context(3, 8);
  EXPECT_EQ(context.rank(), 3);
  EXPECT_EQ(context.pool_size(), 8);
  EXPECT_FALSE(context.cancelled());
  context.ReportProgress(0.5, "nobody listens");  // No sink: a no-op, not a crash.
}

TEST_F(TaskRunnerTest, SleepAndSpinStopWhenTheFlagIsSet) {
  std::atomic<bool> cancelled{true};
  const TaskContext context(0, 1, &cancelled);
  // An hour each: they return only because they see the flag.
  for (const absl::string_view function : {"sleep", "spin"}) {
    const wire::ResultFrame result = RunTask(registry_, context, Frame(1, function, "3600000"));
    ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError) << function;
    EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kCancelled)) << function;
    EXPECT_THAT(result.error().message(), HasSubstr("interrupted")) << function;
  }
}

class RecordingSink final : public ProgressSink {
 public:
  void Report(double fraction, absl::string_view message) override {
    reports.emplace_back(fraction, std::string(message));
  }
  std::vector<std::pair<double, std::string>> reports;
};

TEST(TaskContextTest, ProgressReachesTheSink) {
  RecordingSink sink;
  FunctionRegistry registry;
  ASSERT_EQ(Register(registry, "steps",
                     [](const TaskContext& context, absl::string_view) {
                       context.ReportProgress(0.25, "one");
                       context.ReportProgress(1.0);
                       return absl::StatusOr<std::string>("done");
                     }),
            absl::OkStatus());
  EXPECT_EQ(RunTask(registry, TaskContext(0, 1, nullptr, &sink), Frame(1, "steps", "")).result(),
            "done");
  EXPECT_THAT(sink.reports, ElementsAre(std::make_pair(0.25, std::string("one")),
                                        std::make_pair(1.0, std::string())));
}

}  // namespace
TEST_F(TaskRunnerTest, SetenvThenGetenvRoundTripsAndBadInputIsRejected) {
  EXPECT_FALSE(Run("setenv", "MPIGATE_TASK_RUNNER_TEST=a=b").has_error());
  EXPECT_EQ(Run("getenv", "MPIGATE_TASK_RUNNER_TEST").result(), "a=b");
  EXPECT_EQ(Run("setenv", "=novalue").error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Run("getenv", "MPIGATE_SURELY_UNSET_VARIABLE").error().code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_FALSE(Run("getcwd", "").result().empty());
}

}  // namespace mpigate::worker
