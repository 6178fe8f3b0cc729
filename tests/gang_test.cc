// Gang tasks, broadcasts and seeded range maps (issue 9), end to end: the C++ client against one
// real mpigate-server with 2 MPI workers that load the test task library
// (tests/testdata/sample_tasks.cc), shared by the suite.
//
// Tests that need a task to stay PENDING occupy both workers with `sleep` tasks that would run for
// ten minutes, wait until those are RUNNING, and interrupt them at the end; a gang is interrupted
// once it has reported progress, so its function surely runs. Waits that a broken scheduler would
// never end are bounded (kPatience), so that a deadlock fails the test rather than hanging it.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"
#include "worker/task.h"

namespace mpigate {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// A sleep that outlasts any test: only an interrupt ends it in time.
constexpr char kForeverMs[] = "600000";
// Far longer than any of these waits takes when the service works.
constexpr absl::Duration kPatience = absl::Minutes(1);

class GangTest : public testing::SharedServerTest<GangTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 2,
            .flags = {"--task-lib=" + testing::RunfilePath("tests/testdata/libsample_tasks.so")}};
  }
  static constexpr char kClientName[] = "gang_test";

 protected:
  void SetUp() override {
    executor_ = Connect();
    ASSERT_NE(executor_, nullptr);
    ASSERT_EQ(executor_->workers(), 2);
  }

  static void Release(std::vector<Future>& busy) {
    for (Future& future : busy) {
      EXPECT_TRUE(future.Interrupt());
      EXPECT_EQ(future.Exception().code(), absl::StatusCode::kCancelled);
    }
  }

  // Runs `task` with the unary Run call, whose TaskOutcome shows the workers, which the client's
  // Future does not.
  static v1::TaskOutcome RunRaw(const v1::TaskSpec& task) {
    std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    v1::RunRequest request;
    *request.mutable_task() = task;
    v1::TaskOutcome outcome;
    const grpc::Status status = stub->Run(&context, request, &outcome);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return outcome;
  }

  std::unique_ptr<Executor> executor_;
};

// What sample.seeded returns for item `index` of a range map with `base_seed` and `input`.
std::string Seeded(uint64_t base_seed, uint64_t index, const std::string& input) {
  return absl::StrCat(index, ":", ItemSeed(base_seed, index), ":", input);
}

// Items [first, first + count) of that map.
std::vector<std::string> SeededRange(uint64_t base_seed, uint64_t first, uint64_t count,
                                     const std::string& input) {
  std::vector<std::string> items;
  for (uint64_t index = first; index < first + count; ++index) {
    items.push_back(Seeded(base_seed, index, input));
  }
  return items;
}

// Every result of `results`, or the first error.
absl::StatusOr<std::vector<std::string>> ReadAll(MapResults results) {
  std::vector<std::string> all;
  for (absl::StatusOr<std::string> result : results) {
    if (!result.ok()) return result.status();
    all.push_back(*std::move(result));
  }
  return all;
}

// Waits until `future` has reported progress; false if it has not within kPatience.
bool AwaitProgress(const Future& future) {
  // Shared with the callback, which stays registered after this returns and runs on the
  // executor's reader thread for every later report.
  struct Reported {
    absl::Mutex mu;
    bool value ABSL_GUARDED_BY(mu) = false;
  };
  auto reported = std::make_shared<Reported>();
  future.AddProgressCallback([reported](const Future&, const TaskProgress&) {
    absl::MutexLock lock(&reported->mu);
    reported->value = true;
  });
  // A report that came before the callback was added is in progress() by now.
  if (future.progress().has_value()) return true;
  absl::MutexLock lock(&reported->mu);
  return reported->mu.AwaitWithTimeout(absl::Condition(&reported->value), kPatience);
}

// --- Gang tasks ---

TEST_F(GangTest, ListFunctionsMarksGangFunctions) {
  const absl::StatusOr<std::vector<FunctionInfo>> functions = executor_->ListFunctions();
  ASSERT_TRUE(functions.ok()) << functions.status();
  std::vector<std::string> gangs;
  std::vector<std::string> singles;
  for (const FunctionInfo& function : *functions) {
    (function.gang ? gangs : singles).push_back(function.name);
  }
  // python.gang: the workers' Python runtime, loaded by default.
  EXPECT_THAT(gangs, UnorderedElementsAre("python.gang", "sample.gang_crash", "sample.gang_fail",
                                          "sample.gang_info", "sample.gang_wait"));
  for (const char* single : {"echo", "sleep", "sample.whoami", "sample.seeded", "sample.square"}) {
    EXPECT_THAT(singles, ::testing::Contains(single));
  }
}

TEST_F(GangTest, AGangOfTwoRunsOnBothWorkersAndAnswersFromRankZero) {
  Future gang = executor_->Submit("sample.gang_info", "", {.gang_size = 2});
  absl::StatusOr<std::string> result = gang.Result(kPatience);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, MatchesRegex("gang_size=2 workers=(0,1|1,0)"));

  // The outcome lists the gang's workers in rank order: the order rank 0 saw in its communicator.
  v1::TaskSpec task;
  task.set_function("sample.gang_info");
  task.mutable_options()->set_gang_size(2);
  const v1::TaskOutcome outcome = RunRaw(task);
  ASSERT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.error().message();
  EXPECT_THAT(outcome.workers(), UnorderedElementsAre(0, 1));
  EXPECT_EQ(outcome.result(),
            absl::StrCat("gang_size=2 workers=", absl::StrJoin(outcome.workers(), ",")));
}

TEST_F(GangTest, AGangOfOneRunsOnOneWorker) {
  for (const uint32_t gang_size : {0u, 1u}) {
    SCOPED_TRACE(absl::StrCat("gang_size ", gang_size));
    absl::StatusOr<std::string> result =
        executor_->Submit("sample.gang_info", "", {.gang_size = gang_size}).Result(kPatience);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_THAT(*result, MatchesRegex("gang_size=1 workers=[01]"));
  }
}

TEST_F(GangTest, AGangLargerThanThePoolIsRejectedWithInvalidArgument) {
  Future gang = executor_->Submit("sample.gang_info", "", {.gang_size = 3});
  EXPECT_EQ(gang.Exception(kPatience).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gang.state(), FutureState::kFinished);
  // Rejected, not queued: the pool still runs gangs that fit.
  EXPECT_TRUE(executor_->Submit("sample.gang_info", "", {.gang_size = 2}).Result(kPatience).ok());
}

TEST_F(GangTest, AGangOfAPlainFunctionIsRejectedWithInvalidArgument) {
  Future gang = executor_->Submit("echo", "not a gang function", {.gang_size = 2});
  EXPECT_EQ(gang.Exception(kPatience).code(), absl::StatusCode::kInvalidArgument);
  // A plain function with the default (or 1) is simply a task.
  EXPECT_EQ(executor_->Submit("echo", "alone", {.gang_size = 1}).Result(kPatience).value_or(""),
            "alone");
}

TEST_F(GangTest, AFailingRankFailsTheGangWithItsErrorNamingTheRank) {
  for (const char* rank : {"0", "1"}) {
    SCOPED_TRACE(absl::StrCat("rank ", rank));
    const absl::Status error =
        executor_->Submit("sample.gang_fail", rank, {.gang_size = 2}).Exception(kPatience);
    EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument) << error;
    EXPECT_THAT(error.message(), HasSubstr("gang rank"));
    EXPECT_THAT(error.message(), HasSubstr(absl::StrCat("rank ", rank, " refuses")));
  }
  // No rank refuses: rank 0's answer.
  EXPECT_EQ(
      executor_->Submit("sample.gang_fail", "2", {.gang_size = 2}).Result(kPatience).value_or(""),
      "ok");
}

TEST_F(GangTest, InterruptEndsARunningGangCancelled) {
  Future gang = executor_->Submit("sample.gang_wait", "", {.gang_size = 2});
  ASSERT_TRUE(AwaitProgress(gang)) << "the gang never reported";
  const std::optional<TaskProgress> progress = gang.progress();
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->fraction, 0.5);
  EXPECT_EQ(progress->message, "waiting");
  EXPECT_EQ(gang.state(), FutureState::kRunning);

  EXPECT_TRUE(gang.Interrupt());
  const absl::Status error = gang.Exception(kPatience);
  EXPECT_EQ(error.code(), absl::StatusCode::kCancelled) << error;
  EXPECT_THAT(error.message(), HasSubstr("gang interrupted"));
  EXPECT_EQ(gang.state(), FutureState::kCancelled);
  // Both workers are free again.
  EXPECT_TRUE(executor_->Submit("sample.gang_info", "", {.gang_size = 2}).Result(kPatience).ok());
}

TEST_F(GangTest, AGangWaitingForWorkersCanBeCancelled) {
  std::vector<Future> busy = OccupyWorkers(*executor_, kForeverMs);
  Future gang = executor_->Submit("sample.gang_info", "", {.gang_size = 2});
  EXPECT_EQ(gang.state(), FutureState::kPending);
  EXPECT_TRUE(gang.Cancel());
  EXPECT_EQ(gang.Exception().code(), absl::StatusCode::kCancelled);
  Release(busy);
}

// A gang needs both workers idle at once. Another client keeps them busy with a stream of small
// tasks, queued before the gang and after it: the gang must still run while the stream lasts, and
// every small task must still finish.
TEST_F(GangTest, AGangRunsWhileAnotherClientFloodsThePool) {
  constexpr int kFloodHalf = 1000;
  std::unique_ptr<Executor> flooder = Connect("gang_test flooder");
  ASSERT_NE(flooder, nullptr);
  std::vector<Future> flood;
  flood.reserve(2 * kFloodHalf);
  for (int i = 0; i < kFloodHalf; ++i) flood.push_back(flooder->Submit("sleep", "1"));
  // The stream has reached the workers before the gang arrives.
  ASSERT_TRUE(flood.front().WaitStarted(kPatience));
  Future gang = executor_->Submit("sample.gang_info", "", {.gang_size = 2});
  for (int i = 0; i < kFloodHalf; ++i) flood.push_back(flooder->Submit("sleep", "1"));

  const absl::StatusOr<std::string> result = gang.Result(kPatience);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, HasSubstr("gang_size=2 workers="));
  const auto unfinished = std::count_if(flood.begin(), flood.end(),
                                        [](const Future& future) { return !future.Done(); });
  EXPECT_GT(unfinished, 0) << "the gang waited for the whole stream of small tasks to pass";
  for (const Future& future : flood) {
    const absl::Status status = future.Exception(kPatience);
    ASSERT_TRUE(status.ok()) << "task " << future.task_id() << ": " << status;
  }
}

TEST_F(GangTest, GangsAndSingleTasksMixedFromTwoThreadsAllFinish) {
  constexpr int kRounds = 10;
  struct Submitted {
    Future future;
    std::string pattern;  // What its result must match.
  };
  std::vector<std::unique_ptr<Executor>> executors;
  for (int t = 0; t < 2; ++t) {
    executors.push_back(Connect(absl::StrCat("gang_test thread ", t)));
    ASSERT_NE(executors.back(), nullptr);
  }
  std::vector<std::vector<Submitted>> submitted(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([t, &executors, &submitted] {
      Executor& executor = *executors[t];
      for (int round = 0; round < kRounds; ++round) {
        submitted[t].push_back({executor.Submit("sample.gang_info", "", {.gang_size = 2}),
                                "gang_size=2 workers=(0,1|1,0)"});
        submitted[t].push_back({executor.Submit("sample.whoami", ""), "[01]"});
        submitted[t].push_back({executor.Submit("sample.gang_info", "", {.gang_size = 1}),
                                "gang_size=1 workers=[01]"});
        submitted[t].push_back(
            {executor.Submit("echo", absl::StrCat(t, ".", round)), absl::StrCat(t, "\\.", round)});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::vector<Submitted>& mine : submitted) {
    ASSERT_EQ(mine.size(), 4 * kRounds);
    for (const Submitted& task : mine) {
      const absl::StatusOr<std::string> result = task.future.Result(kPatience);
      ASSERT_TRUE(result.ok()) << "task " << task.future.task_id() << ": " << result.status();
      EXPECT_THAT(*result, MatchesRegex(task.pattern));
    }
  }
}

// --- Broadcast ---

TEST_F(GangTest, BroadcastRunsOnceOnEveryWorkerInWorkerOrder) {
  BroadcastFuture broadcast = executor_->Broadcast("sample.whoami", "");
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> results = broadcast.Results(kPatience);
  ASSERT_TRUE(results.ok()) << results.status();
  std::vector<std::string> workers;
  for (const absl::StatusOr<std::string>& result : *results) {
    ASSERT_TRUE(result.ok()) << result.status();
    workers.push_back(*result);
  }
  EXPECT_THAT(workers, ElementsAre("0", "1"));
  EXPECT_EQ(broadcast.future().state(), FutureState::kFinished);
  // Results() may be read again, from any copy.
  const BroadcastFuture copy = broadcast;
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> again = copy.Results();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->size(), 2u);

  v1::TaskSpec task;
  task.set_function("sample.whoami");
  task.mutable_options()->set_broadcast(true);
  const v1::TaskOutcome outcome = RunRaw(task);
  ASSERT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.error().message();
  EXPECT_THAT(outcome.workers(), ElementsAre(0, 1));
}

TEST_F(GangTest, BroadcastYieldsEachWorkersErrorOnItsOwn) {
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> results =
      executor_->Broadcast("sample.reject", "everywhere").Results(kPatience);
  ASSERT_TRUE(results.ok()) << "the broadcast itself ran: " << results.status();
  ASSERT_EQ(results->size(), 2u);
  for (const absl::StatusOr<std::string>& result : *results) {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kOutOfRange) << result.status();
    EXPECT_THAT(result.status().message(), HasSubstr("'everywhere' is out of range"));
  }
}

TEST_F(GangTest, BroadcastWithAGangSizeIsRejectedWithInvalidArgument) {
  BroadcastFuture broadcast = executor_->Broadcast("sample.gang_info", "", {.gang_size = 2});
  EXPECT_EQ(broadcast.Results(kPatience).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(executor_->Broadcast("sample.nope", "").Results(kPatience).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(GangTest, BroadcastWaitsForEveryWorkerAndCanBeCancelledMeanwhile) {
  std::vector<Future> busy = OccupyWorkers(*executor_, kForeverMs);
  BroadcastFuture broadcast = executor_->Broadcast("sample.whoami", "");
  const absl::Status timed_out = broadcast.Results(absl::Milliseconds(50)).status();
  EXPECT_EQ(timed_out.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(timed_out.message(), HasSubstr("waiting for task")) << "the wait's, not the task's";
  EXPECT_EQ(broadcast.future().state(), FutureState::kPending);
  EXPECT_TRUE(broadcast.future().Cancel());
  EXPECT_EQ(broadcast.Results().status().code(), absl::StatusCode::kCancelled);
  Release(busy);
}

// --- Seeded range maps ---

TEST_F(GangTest, MapRangeYieldsSeededItemsInIndexOrder) {
  const absl::StatusOr<std::vector<std::string>> items = ReadAll(executor_->MapRange(
      "sample.seeded", "params", {.count = 10, .batch_size = 3, .base_seed = 42}));
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_THAT(*items, ElementsAreArray(SeededRange(42, 0, 10, "params")));
}

TEST_F(GangTest, MapRangeIsReproducibleAndIndependentOfTheBatchSize) {
  const RangeOptions range = {.count = 10, .batch_size = 3, .base_seed = 7};
  const absl::StatusOr<std::vector<std::string>> first =
      ReadAll(executor_->MapRange("sample.seeded", "x", range));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(*first, ElementsAreArray(SeededRange(7, 0, 10, "x")));
  for (const int batch_size : {3, 7, 1, 10, 64}) {
    SCOPED_TRACE(absl::StrCat("batch_size ", batch_size));
    RangeOptions rebatched = range;
    rebatched.batch_size = batch_size;
    const absl::StatusOr<std::vector<std::string>> again =
        ReadAll(executor_->MapRange("sample.seeded", "x", rebatched));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *first);
  }
  // Another base seed gives other items; a range from `first` continues the same ensemble.
  RangeOptions reseeded = range;
  reseeded.base_seed = 8;
  EXPECT_NE(ReadAll(executor_->MapRange("sample.seeded", "x", reseeded)).value_or(*first), *first);
  RangeOptions tail = range;
  tail.first = 6;
  tail.count = 4;
  const absl::StatusOr<std::vector<std::string>> continued =
      ReadAll(executor_->MapRange("sample.seeded", "x", tail));
  ASSERT_TRUE(continued.ok()) << continued.status();
  EXPECT_THAT(*continued, ElementsAreArray(first->begin() + 6, first->end()));
}

TEST_F(GangTest, UnorderedMapRangeYieldsEveryItem) {
  const absl::StatusOr<std::vector<std::string>> items = ReadAll(
      executor_->MapRange("sample.seeded", "any order",
                          {.count = 10, .batch_size = 3, .base_seed = 42, .unordered = true}));
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_THAT(*items, UnorderedElementsAreArray(SeededRange(42, 0, 10, "any order")));
}

TEST_F(GangTest, MapRangeRefusesBadRangesAndAnEmptyRangeYieldsNothing) {
  MapResults zero_batch = executor_->MapRange("sample.seeded", "", {.count = 10, .batch_size = 0});
  std::optional<absl::StatusOr<std::string>> error = zero_batch.Next();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(error->status().message(), HasSubstr("batch_size must be >= 1, got 0"));
  EXPECT_FALSE(zero_batch.Next().has_value()) << "one error, then the end";

  MapResults wrapping = executor_->MapRange(
      "sample.seeded", "", {.count = 2, .first = std::numeric_limits<uint64_t>::max()});
  error = wrapping.Next();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->status().code(), absl::StatusCode::kInvalidArgument);

  MapResults empty = executor_->MapRange("sample.seeded", "", {.count = 0});
  EXPECT_FALSE(empty.Next().has_value());
}

TEST_F(GangTest, MapRangeOfAFailingFunctionYieldsTheFirstItemsError) {
  MapResults results =
      executor_->MapRange("sample.reject", "every item", {.count = 5, .batch_size = 2});
  std::optional<absl::StatusOr<std::string>> first = results.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status().code(), absl::StatusCode::kOutOfRange) << first->status();
  EXPECT_FALSE(results.Next().has_value()) << "an error ends the iteration";
}

// --- Gangs and the service's own life ---

std::string SampleTasksFlag() {
  return "--task-lib=" + testing::RunfilePath("tests/testdata/libsample_tasks.so");
}

// In world mode the workers are ranks 1..N of mpiexec's world and rank 0 is the gateway: a gang's
// communicator is made from the worker ranks alone.
TEST(GangServiceTest, InWorldModeAGangSpansTheWorkerRanks) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {SampleTasksFlag()}, .world = true}).ok());
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "gang_world"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    const absl::StatusOr<std::string> info =
        (*executor)->Submit("sample.gang_info", "", {.gang_size = 2}).Result(kPatience);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_THAT(*info, MatchesRegex("gang_size=2 workers=(0,1|1,0)"));
    const absl::StatusOr<std::vector<absl::StatusOr<std::string>>> everyone =
        (*executor)->Broadcast("sample.whoami", "").Results(kPatience);
    ASSERT_TRUE(everyone.ok()) << everyone.status();
    ASSERT_EQ(everyone->size(), 2u);
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// A gang still running when the drain's grace ends fails; the shutdown that follows reaches its
// function through its polls of the cancellation flag, and the service exits cleanly.
TEST(GangServiceTest, ADrainStopsARunningGangThatPollsAndTheServiceExitsCleanly) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {SampleTasksFlag(), "--drain-grace=300ms"}}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "gang_drain"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  Future gang = (*executor)->Submit("sample.gang_wait", "", {.gang_size = 2});
  ASSERT_TRUE(AwaitProgress(gang)) << "the gang never reported";

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text, ::testing::Not(HasSubstr("aborting the workers")));
  const absl::Status error = gang.Exception(kPatience);
  EXPECT_EQ(error.code(), absl::StatusCode::kCancelled) << error;
  EXPECT_THAT(error.message(), HasSubstr("drain grace period"));
}

}  // namespace
}  // namespace mpigate
