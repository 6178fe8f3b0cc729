#include "worker/task_runner.h"

#include <unistd.h>

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
#include "common/shared_memory.h"
#include "gmock/gmock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"
#include "worker/builtins.h"
#include "worker/gang.h"
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

TEST(FunctionRegistryTest, BothPlainAndGangFunctionIsInvalidArgument) {
  FunctionRegistry registry;
  TaskDefinition definition;
  definition.name = "both";
  definition.function = [](const TaskContext&, absl::string_view) {
    return absl::StatusOr<std::string>("plain");
  };
  definition.gang_function = [](const GangContext&, absl::string_view) {
    return absl::StatusOr<std::string>("gang");
  };
  const absl::Status status = registry.Add(definition);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("both"));
  EXPECT_TRUE(registry.definitions().empty());
}

TEST(FunctionRegistryTest, GangFunctionAloneIsAccepted) {
  FunctionRegistry registry;
  TaskDefinition definition;
  definition.name = "gang";
  definition.gang_function = [](const GangContext&, absl::string_view) {
    return absl::StatusOr<std::string>("gang");
  };
  EXPECT_EQ(registry.Add(definition), absl::OkStatus());
  ASSERT_NE(registry.Find("gang"), nullptr);
  EXPECT_FALSE(registry.Find("gang")->function);
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

// Seeded range maps: the worker makes the items from TaskFrame.range.

wire::TaskFrame RangeFrame(uint64_t first, uint64_t count, uint64_t base_seed) {
  wire::TaskFrame frame = Frame(9, "seeded", "shared input");
  frame.mutable_range()->set_first(first);
  frame.mutable_range()->set_count(count);
  frame.mutable_range()->set_base_seed(base_seed);
  return frame;
}

// The item's index, its seed, the input and the worker's index; odd indices from 100 on fail, to
// show that items fail on their own.
absl::StatusOr<std::string> Seeded(const TaskContext& context, absl::string_view input) {
  if (context.item_index() >= 100 && context.item_index() % 2 == 1) {
    return absl::OutOfRangeError(absl::StrCat("odd item ", context.item_index()));
  }
  return absl::StrCat(context.item_index(), ":", context.item_seed(), ":", input, ":",
                      context.rank());
}

std::vector<std::string> Results(const wire::ResultFrame& frame) {
  std::vector<std::string> results;
  for (const wire::ItemResult& item : frame.items()) {
    results.push_back(item.outcome_case() == wire::ItemResult::kResult
                          ? item.result()
                          : absl::StrCat("error ", item.error().code()));
  }
  return results;
}

TEST_F(TaskRunnerTest, RangeCallsTheFunctionOncePerIndexWithItsSeedAndThePayload) {
  ASSERT_EQ(Register(registry_, "seeded", Seeded), absl::OkStatus());
  const wire::ResultFrame result = RunTask(registry_, context_, RangeFrame(7, 3, 42));
  EXPECT_EQ(result.task_key(), 9u);
  // A range batch reports per item, like a chunk.
  EXPECT_EQ(result.outcome_case(), wire::ResultFrame::OUTCOME_NOT_SET);
  EXPECT_THAT(Results(result), ElementsAre(absl::StrCat("7:", ItemSeed(42, 7), ":shared input:2"),
                                           absl::StrCat("8:", ItemSeed(42, 8), ":shared input:2"),
                                           absl::StrCat("9:", ItemSeed(42, 9), ":shared input:2")));
}

TEST_F(TaskRunnerTest, RangeItemsFailOnTheirOwn) {
  ASSERT_EQ(Register(registry_, "seeded", Seeded), absl::OkStatus());
  const wire::ResultFrame result = RunTask(registry_, context_, RangeFrame(100, 3, 1));
  ASSERT_EQ(result.items_size(), 3);
  EXPECT_EQ(result.items(0).outcome_case(), wire::ItemResult::kResult);
  ASSERT_EQ(result.items(1).outcome_case(), wire::ItemResult::kError);
  EXPECT_EQ(result.items(1).error().code(), Code(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(result.items(1).error().message(), "odd item 101");
  EXPECT_EQ(result.items(2).outcome_case(), wire::ItemResult::kResult);
}

TEST_F(TaskRunnerTest, RangeResultsDoNotDependOnTheBatches) {
  ASSERT_EQ(Register(registry_, "seeded", Seeded), absl::OkStatus());
  const std::vector<std::string> whole = Results(RunTask(registry_, context_, RangeFrame(0, 7, 5)));
  ASSERT_EQ(whole.size(), 7u);
  std::vector<std::string> batched;
  for (const auto& [first, count] : {std::pair<uint64_t, uint64_t>{0, 2}, {2, 1}, {3, 4}}) {
    for (std::string& result : Results(RunTask(registry_, context_, RangeFrame(first, count, 5)))) {
      batched.push_back(std::move(result));
    }
  }
  EXPECT_EQ(batched, whole);
}

// A range or chunk stops at the item that takes its result past TaskFrame.max_result_bytes: the
// items after it are never called.
TEST_F(TaskRunnerTest, ResultsStopAtTheItemThatTakesThemPastTheLimit) {
  int calls = 0;
  ASSERT_EQ(
      Register(registry_, "counted",
               [&calls](const TaskContext&, absl::string_view) -> absl::StatusOr<std::string> {
                 ++calls;
                 return std::string(100, 'c');
               }),
      absl::OkStatus());
  // 103 bytes an item (a tag, a length and the ItemResult's own tag, length and 100 bytes): the
  // 49th makes 5,047.
  wire::TaskFrame range = Frame(12, "counted", "");
  range.mutable_range()->set_count(1000);
  range.set_max_result_bytes(5000);
  wire::ResultFrame result = RunTask(registry_, context_, range);
  EXPECT_EQ(calls, 49);
  EXPECT_EQ(result.task_key(), 12u);
  EXPECT_THAT(result.items(), IsEmpty());
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(result.error().message(), HasSubstr("grew past 5000 bytes at item 49 of 1000"));
  EXPECT_THAT(result.error().message(), HasSubstr("--max_message_mb"));

  calls = 0;
  wire::TaskFrame chunk = Frame(13, "counted", "");
  for (int i = 0; i < 10; ++i) chunk.add_items("x");
  chunk.set_max_result_bytes(250);
  result = RunTask(registry_, context_, chunk);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(result.error().message(), HasSubstr("at item 3 of 10"));

  // Within the limit, nothing changes.
  chunk.set_max_result_bytes(2000);
  result = RunTask(registry_, context_, chunk);
  EXPECT_FALSE(result.has_error());
  EXPECT_EQ(result.items_size(), 10);
}

TEST_F(TaskRunnerTest, ASingleResultPastTheLimitIsResourceExhausted) {
  wire::TaskFrame task = Frame(14, "echo", std::string(3000, 'e'));
  task.set_max_result_bytes(2000);
  wire::ResultFrame result = RunTask(registry_, context_, task);
  EXPECT_EQ(result.task_key(), 14u);
  EXPECT_FALSE(result.has_result());
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(result.error().message(), HasSubstr("is larger than 2000 bytes"));
  task.set_max_result_bytes(4000);
  EXPECT_EQ(RunTask(registry_, context_, task).result(), task.payload());
}

TEST(ItemSeedTest, DependsOnBaseAndIndexOnly) {
  // A compile-time constant: a client can compute an item's seed to reproduce it alone.
  static_assert(ItemSeed(1, 2) == ItemSeed(1, 2));
  EXPECT_NE(ItemSeed(7, 0), ItemSeed(7, 1));
  EXPECT_NE(ItemSeed(7, 1), ItemSeed(7, 2));
  EXPECT_NE(ItemSeed(7, 1), ItemSeed(8, 1));
  // Not a plain sum: base b, index i+1 and base b+1, index i differ.
  EXPECT_NE(ItemSeed(7, 2), ItemSeed(8, 1));
  EXPECT_NE(ItemSeed(0, 0), 0u);
}

TEST(TaskContextTest, ForItemKeepsTheWorkerAndSetsTheItem) {
  std::atomic<bool> cancelled{true};
  const TaskContext context(3, 8, &cancelled);
  EXPECT_EQ(context.item_index(), 0u);
  EXPECT_EQ(context.item_seed(), 0u);
  const TaskContext item = context.ForItem(12, 34);
  EXPECT_EQ(item.rank(), 3);
  EXPECT_EQ(item.pool_size(), 8);
  EXPECT_TRUE(item.cancelled());
  EXPECT_EQ(item.item_index(), 12u);
  EXPECT_EQ(item.item_seed(), 34u);
}

// Gang functions: the runner's side. The communicator is made by the worker loop; here it is
// MPI_COMM_NULL, and the functions make no MPI calls.

absl::Status RegisterGang(FunctionRegistry& registry, absl::string_view name,
                          GangFunction function) {
  TaskDefinition definition;
  definition.name = std::string(name);
  definition.description = "a test gang function";
  definition.gang_function = std::move(function);
  return registry.Add(std::move(definition));
}

// Counts polls and sets the task's flag on the third, as a cancel from the gateway would.
class FakeLink final : public GangLink {
 public:
  explicit FakeLink(std::atomic<bool>& cancelled) : cancelled_(cancelled) {}
  void Poll() override {
    if (++polls == 3) cancelled_.store(true);
  }
  int polls = 0;

 private:
  std::atomic<bool>& cancelled_;
};

TEST_F(TaskRunnerTest, RunGangTaskCallsTheGangFunctionWithItsContext) {
  ASSERT_EQ(RegisterGang(registry_, "gang.whoami",
                         [](const GangContext& gang, absl::string_view input) {
                           return absl::StatusOr<std::string>(
                               absl::StrCat(input, " ", gang.gang_rank(), "/", gang.gang_size(),
                                            " worker ", gang.rank(), "/", gang.pool_size(),
                                            gang.comm() == MPI_COMM_NULL ? " null" : " comm"));
                         }),
            absl::OkStatus());
  const GangContext gang(context_, MPI_COMM_NULL, /*gang_rank=*/1, /*gang_size=*/3, nullptr);
  const wire::ResultFrame result = RunGangTask(registry_, gang, Frame(4, "gang.whoami", "hi"));
  EXPECT_EQ(result.task_key(), 4u);
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kResult) << result.DebugString();
  EXPECT_EQ(result.result(), "hi 1/3 worker 2/4 null");
}

TEST_F(TaskRunnerTest, GangFunctionPollsThroughItsLink) {
  ASSERT_EQ(
      RegisterGang(registry_, "gang.wait",
                   [](const GangContext& gang, absl::string_view) -> absl::StatusOr<std::string> {
                     while (!gang.cancelled()) {
                     }
                     return absl::CancelledError("gang interrupted");
                   }),
      absl::OkStatus());
  std::atomic<bool> cancelled{false};
  FakeLink link(cancelled);
  const GangContext gang(TaskContext(0, 2, &cancelled), MPI_COMM_NULL, 0, 2, &link);
  const wire::ResultFrame result = RunGangTask(registry_, gang, Frame(4, "gang.wait", ""));
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kCancelled));
  EXPECT_EQ(link.polls, 3);
}

TEST_F(TaskRunnerTest, GangFunctionExceptionKeepsTypeAndMessage) {
  ASSERT_EQ(RegisterGang(registry_, "gang.throws",
                         [](const GangContext&, absl::string_view) -> absl::StatusOr<std::string> {
                           throw std::logic_error("rank trouble");
                         }),
            absl::OkStatus());
  const GangContext gang(context_, MPI_COMM_NULL, 0, 1, nullptr);
  const wire::ResultFrame result = RunGangTask(registry_, gang, Frame(4, "gang.throws", ""));
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(result.error().message(), "rank trouble");
  EXPECT_EQ(result.error().exception_type(), "std::logic_error");
}

absl::StatusOr<google::protobuf::Int64Value> GangSquare(
    const GangContext& gang, const google::protobuf::Int64Value& request) {
  google::protobuf::Int64Value response;
  response.set_value(request.value() * request.value() + gang.gang_rank());
  return response;
}

TEST_F(TaskRunnerTest, TypedGangFunctionParsesItsRequest) {
  TaskDefinition definition;
  definition.name = "gang.square";
  definition.gang_function =
      task_internal::TypedCall<GangContext, google::protobuf::Int64Value,
                               google::protobuf::Int64Value>("gang.square", GangSquare);
  ASSERT_EQ(registry_.Add(std::move(definition)), absl::OkStatus());
  const GangContext gang(context_, MPI_COMM_NULL, 2, 3, nullptr);
  google::protobuf::Int64Value request;
  request.set_value(5);
  const wire::ResultFrame result =
      RunGangTask(registry_, gang, Frame(4, "gang.square", request.SerializeAsString()));
  google::protobuf::Int64Value response;
  ASSERT_TRUE(response.ParseFromString(result.result())) << result.DebugString();
  EXPECT_EQ(response.value(), 27);

  const wire::ResultFrame bad = RunGangTask(registry_, gang, Frame(4, "gang.square", "\xff\xff"));
  ASSERT_EQ(bad.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(bad.error().code(), Code(absl::StatusCode::kInvalidArgument));
}

TEST_F(TaskRunnerTest, PlainFrameNamingAGangFunctionIsFailedPrecondition) {
  ASSERT_EQ(RegisterGang(registry_, "gang.only",
                         [](const GangContext&, absl::string_view) {
                           return absl::StatusOr<std::string>("ran");
                         }),
            absl::OkStatus());
  for (const bool range : {false, true}) {
    wire::TaskFrame frame = Frame(3, "gang.only", "");
    if (range) frame.mutable_range()->set_count(2);
    const wire::ResultFrame result = RunTask(registry_, context_, frame);
    EXPECT_EQ(result.task_key(), 3u);
    ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError) << range;
    EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(result.error().message(), HasSubstr("'gang.only' is a gang function"));
    EXPECT_THAT(result.items(), IsEmpty());
  }
}

TEST_F(TaskRunnerTest, GangFrameNamingAPlainFunctionIsFailedPrecondition) {
  const GangContext gang(context_, MPI_COMM_NULL, 0, 2, nullptr);
  const wire::ResultFrame result = RunGangTask(registry_, gang, Frame(3, "echo", "x"));
  EXPECT_EQ(result.task_key(), 3u);
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(result.error().message(), HasSubstr("'echo' is not a gang function"));
}

TEST_F(TaskRunnerTest, GangFrameNamingNoFunctionIsNotFound) {
  const GangContext gang(context_, MPI_COMM_NULL, 0, 2, nullptr);
  const wire::ResultFrame result = RunGangTask(registry_, gang, Frame(3, "nowhere", ""));
  ASSERT_EQ(result.outcome_case(), wire::ResultFrame::kError);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kNotFound));
}

TEST_F(TaskRunnerTest, SetenvThenGetenvRoundTripsAndBadInputIsRejected) {
  EXPECT_FALSE(Run("setenv", "MPIGATE_TASK_RUNNER_TEST=a=b").has_error());
  EXPECT_EQ(Run("getenv", "MPIGATE_TASK_RUNNER_TEST").result(), "a=b");
  EXPECT_EQ(Run("setenv", "=novalue").error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Run("getenv", "MPIGATE_SURELY_UNSET_VARIABLE").error().code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_FALSE(Run("getcwd", "").result().empty());
}

TEST_F(TaskRunnerTest, ASharedInputIsMappedForTheCallAndALargeResultIsShared) {
  const std::string prefix = NewSharedObjectPrefix(getpid()).value();
  const std::string input(100'000, 'i');
  absl::StatusOr<std::string> name = CreateSharedObject(prefix, input);
  ASSERT_TRUE(name.ok()) << name.status();
  wire::TaskFrame frame = Frame(12, "echo", "");
  frame.mutable_shared_payload()->set_name(*name);
  frame.mutable_shared_payload()->set_size(input.size());
  frame.set_shared_result_prefix(prefix);
  frame.set_shared_result_min_bytes(input.size());

  const wire::ResultFrame shared = RunTask(registry_, context_, frame);
  EXPECT_FALSE(shared.has_error()) << shared.DebugString();
  EXPECT_FALSE(shared.has_result());
  ASSERT_TRUE(shared.has_shared_result());
  EXPECT_TRUE(IsSharedObjectName(shared.shared_result().name(), prefix));
  EXPECT_TRUE(ReadSharedObject(shared.shared_result().name(), input.size()).value_or("") == input);
  UnlinkSharedObject(shared.shared_result().name());

  // One byte short of the threshold: in the frame.
  frame.set_shared_result_min_bytes(input.size() + 1);
  const wire::ResultFrame inline_result = RunTask(registry_, context_, frame);
  EXPECT_FALSE(inline_result.has_shared_result());
  EXPECT_TRUE(inline_result.result() == input);

  // Without the input the task fails; it was never the runner's to remove.
  UnlinkSharedObject(*name);
  const wire::ResultFrame lost = RunTask(registry_, context_, frame);
  ASSERT_TRUE(lost.has_error());
  EXPECT_EQ(lost.error().code(), Code(absl::StatusCode::kDataLoss));
  EXPECT_THAT(lost.error().message(), HasSubstr(*name));
}

}  // namespace
}  // namespace mpigate::worker
