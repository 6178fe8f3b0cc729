// Executor semantics end to end, modelled on CPython's and mpi4py's concurrent.futures tests: one
// real mpigate-server with 2 MPI workers shared by the suite, driven through the C++ client.
//
// Tests that need a task to be PENDING occupy both workers with `sleep` tasks and wait until
// those are RUNNING (Future::WaitStarted), so the pending task cannot start before the workers
// free up; the sleeps are long enough that the test's next steps come first.
#include "client/executor.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAreArray;

// Long enough that a test's next few steps (a round trip or two) surely happen while it runs,
// with room for a loaded CI machine.
constexpr char kBusyMs[] = "1500";

class ExecutorTest : public testing::SharedServerTest<ExecutorTest> {
 public:
  // Workers see MAP_A and MAP_B, so that `getenv` maps succeed for those names and fail
  // NOT_FOUND for others.
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 2, .flags = {"--worker-env=MAP_A=alpha", "--worker-env=MAP_B=beta"}};
  }
  static constexpr char kClientName[] = "executor_test";

 protected:
  static v1::PoolStatus PoolStatus() {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::PoolStatus status;
    EXPECT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
    return status;
  }
};

std::vector<std::string> Numbered(int n) {
  std::vector<std::string> inputs;
  for (int i = 0; i < n; ++i) inputs.push_back(absl::StrCat("input-", i));
  return inputs;
}

// What `getenv` of `name` answers on the suite's workers: a value, or NOT_FOUND naming it.
struct Expected {
  std::string name;
  std::optional<std::string> value;
};

// Names, some set on the workers and some not, in an order that puts a failure in the middle of
// chunks of 2 and of 3, and at the end of one.
std::vector<Expected> EnvironmentNames() {
  return {{"MAP_A", "alpha"}, {"UNSET_1", std::nullopt}, {"MAP_B", "beta"},
          {"MAP_A", "alpha"}, {"UNSET_4", std::nullopt}, {"MAP_B", "beta"},
          {"MAP_A", "alpha"}, {"UNSET_7", std::nullopt}};
}

std::vector<std::string> NamesOf(const std::vector<Expected>& expected) {
  std::vector<std::string> names;
  for (const Expected& e : expected) names.push_back(e.name);
  return names;
}

// Checks one result of a `getenv` map against what item `index` must answer.
void ExpectGetenvResult(const std::vector<Expected>& expected, size_t index,
                        const absl::StatusOr<std::string>& result) {
  ASSERT_LT(index, expected.size());
  SCOPED_TRACE(absl::StrCat("item ", index, " (", expected[index].name, ")"));
  if (expected[index].value.has_value()) {
    EXPECT_EQ(result.value_or("<error>"), *expected[index].value) << result.status();
  } else {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(result.status().message(), HasSubstr(expected[index].name));
  }
}

// Every result of `results`, which must all be OK.
std::vector<std::string> Drain(MapResults results) {
  std::vector<std::string> values;
  for (absl::StatusOr<std::string> result : results) {
    EXPECT_TRUE(result.ok()) << result.status();
    values.push_back(result.value_or("<error>"));
  }
  return values;
}

// --- Future ---

TEST_F(ExecutorTest, FutureReportsSuccessAndFailure) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future ok = executor->Submit("echo", "hello");
  EXPECT_EQ(ok.Result().value_or(""), "hello");
  EXPECT_EQ(ok.state(), FutureState::kFinished);
  EXPECT_TRUE(ok.Done());
  EXPECT_FALSE(ok.Running());
  EXPECT_FALSE(ok.Cancelled());
  EXPECT_TRUE(ok.Exception().ok());

  Future failed = executor->Submit("fail", "boom");
  const absl::Status error = failed.Exception();
  EXPECT_EQ(error.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(error.message(), HasSubstr("boom"));
  EXPECT_EQ(failed.state(), FutureState::kFinished);
  EXPECT_EQ(failed.Result().status(), error);
}

TEST_F(ExecutorTest, ResultAndExceptionTimeOutWhileTheTaskGoesOn) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future future = executor->Submit("sleep", kBusyMs);
  const absl::StatusOr<std::string> early = future.Result(absl::Milliseconds(1));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(early.status().message(), HasSubstr("timed out"));
  EXPECT_EQ(future.Exception(absl::Milliseconds(1)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(future.Wait(absl::Milliseconds(1)));
  EXPECT_TRUE(future.Exception().ok());
  EXPECT_TRUE(future.Done());
}

TEST_F(ExecutorTest, PendingFuturesCancelRunningOnesDoNot) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
  Future pending = executor->Submit("echo", "never");
  EXPECT_EQ(pending.state(), FutureState::kPending);

  EXPECT_TRUE(busy[0].Running());
  EXPECT_FALSE(busy[0].Cancel());
  EXPECT_EQ(busy[0].state(), FutureState::kRunning);

  EXPECT_TRUE(pending.Cancel());
  EXPECT_TRUE(pending.Cancelled());
  EXPECT_TRUE(pending.Done());
  EXPECT_EQ(pending.state(), FutureState::kCancelled);
  EXPECT_EQ(pending.Result().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(pending.Exception().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(pending.Cancel()) << "cancelling twice still answers true";

  for (Future& future : busy) {
    EXPECT_TRUE(future.Result().ok());
    EXPECT_FALSE(future.Cancel()) << "a finished future cannot be cancelled";
  }
}

TEST_F(ExecutorTest, DoneCallbacksRunExactlyOnceBeforeOrAfterCompletion) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
  Future pending = executor->Submit("echo", "later");
  Future cancelled = executor->Submit("echo", "cancelled");

  // A cancelled future's callbacks run too, once.
  std::atomic<int> cancelled_calls{0};
  cancelled.AddDoneCallback([&](const Future& future) {
    EXPECT_TRUE(future.Cancelled());
    cancelled_calls.fetch_add(1);
  });
  ASSERT_TRUE(cancelled.Cancel());

  std::atomic<int> calls{0};
  absl::Notification called;
  Future seen = cancelled;
  pending.AddDoneCallback([&](const Future& future) {
    seen = future;
    if (calls.fetch_add(1) == 0) called.Notify();
  });
  EXPECT_EQ(calls.load(), 0);
  EXPECT_TRUE(pending.Result().ok());
  called.WaitForNotification();
  EXPECT_EQ(seen, pending);

  // Added after completion: runs at once, on this thread.
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  pending.AddDoneCallback([&](const Future&) {
    ran_on = std::this_thread::get_id();
    calls.fetch_add(1);
  });
  EXPECT_EQ(ran_on, caller);
  EXPECT_EQ(calls.load(), 2);

  executor->Shutdown(/*wait=*/true);
  EXPECT_EQ(cancelled_calls.load(), 1);
  EXPECT_EQ(calls.load(), 2);
}

// --- Map ---

TEST_F(ExecutorTest, MapYieldsInInputOrderForAnyChunksize) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const std::vector<std::string> inputs = Numbered(23);
  for (const int chunksize : {1, 4, 23, 50}) {
    SCOPED_TRACE(absl::StrCat("chunksize ", chunksize));
    EXPECT_THAT(Drain(executor->Map("echo", inputs, {.chunksize = chunksize})),
                ElementsAreArray(inputs));
  }
  EXPECT_THAT(Drain(executor->Map("echo", {})), ElementsAre());
}

TEST_F(ExecutorTest, UnorderedMapYieldsEveryItemAndKeepsOrderWithinChunks) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  constexpr int kChunksize = 3;
  const std::vector<std::string> inputs = Numbered(20);
  const std::vector<std::string> results =
      Drain(executor->Map("echo", inputs, {.chunksize = kChunksize, .unordered = true}));
  ASSERT_THAT(results, UnorderedElementsAreArray(inputs));
  std::vector<int> last_position_of_chunk(inputs.size() / kChunksize + 1, -1);
  for (int position = 0; position < static_cast<int>(results.size()); ++position) {
    const auto input = std::find(inputs.begin(), inputs.end(), results[position]);
    const int chunk = static_cast<int>(input - inputs.begin()) / kChunksize;
    EXPECT_LT(last_position_of_chunk[chunk], position);
    last_position_of_chunk[chunk] = position;
  }
}

TEST_F(ExecutorTest, UnorderedMapYieldsTheFirstChunkToComplete) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // Two chunks, one per worker: the first sleeps, the second fails at once (not a number).
  const std::vector<std::string> inputs = {kBusyMs, "not a number"};
  MapResults ordered = executor->Map("sleep", inputs);
  std::optional<absl::StatusOr<std::string>> first = ordered.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->ok()) << "in order, the sleep's result comes first";
  EXPECT_EQ(ordered.Next()->status().code(), absl::StatusCode::kInvalidArgument);

  MapResults unordered = executor->Map("sleep", inputs, {.unordered = true});
  first = unordered.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status().code(), absl::StatusCode::kInvalidArgument)
      << "unordered, the failure that completed first comes first";
  EXPECT_EQ(unordered.index(), 1u);
  EXPECT_FALSE(unordered.Next().has_value()) << "an error ends the iteration";
}

TEST_F(ExecutorTest, MapItemErrorSurfacesAtItsPositionAndEndsTheIteration) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const std::vector<std::string> inputs = {"0", "1", "bad", "2", "3", "4"};
  for (const int chunksize : {1, 2, 4}) {
    SCOPED_TRACE(absl::StrCat("chunksize ", chunksize));
    MapResults results = executor->Map("sleep", inputs, {.chunksize = chunksize});
    EXPECT_TRUE(results.Next()->ok());
    EXPECT_TRUE(results.Next()->ok());
    const absl::StatusOr<std::string> error = *results.Next();
    EXPECT_EQ(error.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(error.status().message(), HasSubstr("bad"));
    EXPECT_EQ(results.index(), 2u);
    EXPECT_FALSE(results.Next().has_value());
    EXPECT_EQ(results.index(), MapResults::kNoIndex);
  }
}

TEST_F(ExecutorTest, KeepGoingMapYieldsEveryItemInOrderPastErrors) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const std::vector<Expected> expected = EnvironmentNames();
  for (const int chunksize : {1, 2, 3, 8}) {
    SCOPED_TRACE(absl::StrCat("chunksize ", chunksize));
    MapResults results =
        executor->Map("getenv", NamesOf(expected), {.chunksize = chunksize, .keep_going = true});
    EXPECT_EQ(results.index(), MapResults::kNoIndex) << "before the first Next()";
    for (size_t i = 0; i < expected.size(); ++i) {
      std::optional<absl::StatusOr<std::string>> result = results.Next();
      ASSERT_TRUE(result.has_value()) << "the map ended before item " << i;
      EXPECT_EQ(results.index(), i);
      ExpectGetenvResult(expected, i, *result);
    }
    EXPECT_FALSE(results.Next().has_value());
    EXPECT_EQ(results.index(), MapResults::kNoIndex);
  }
}

TEST_F(ExecutorTest, UnorderedKeepGoingMapYieldsEveryItemOnceWithItsIndex) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const std::vector<Expected> expected = EnvironmentNames();
  for (const int chunksize : {1, 3}) {
    SCOPED_TRACE(absl::StrCat("chunksize ", chunksize));
    MapResults results =
        executor->Map("getenv", NamesOf(expected),
                      {.chunksize = chunksize, .unordered = true, .keep_going = true});
    std::vector<int> seen(expected.size(), 0);
    std::vector<size_t> last_of_chunk(expected.size(), MapResults::kNoIndex);
    while (std::optional<absl::StatusOr<std::string>> result = results.Next()) {
      const size_t index = results.index();
      ASSERT_LT(index, expected.size());
      ++seen[index];
      ExpectGetenvResult(expected, index, *result);
      // A chunk's items come together and in order.
      const size_t chunk = index / static_cast<size_t>(chunksize);
      if (index % static_cast<size_t>(chunksize) != 0) {
        EXPECT_EQ(last_of_chunk[chunk], index - 1);
      }
      last_of_chunk[chunk] = index;
    }
    EXPECT_THAT(seen, ::testing::Each(1));
  }
}

TEST_F(ExecutorTest, UnorderedMapIndexSaysWhichItemCameFirst) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // An empty map has no index, ever.
  MapResults results = executor->Map("echo", {}, {.unordered = true});
  EXPECT_FALSE(results.Next().has_value());
  EXPECT_EQ(results.index(), MapResults::kNoIndex);
  // Two chunks, one per worker: item 0 sleeps, item 1 ends first.
  results = executor->Map("sleep", {kBusyMs, "0"}, {.unordered = true});
  std::vector<size_t> order;
  while (std::optional<absl::StatusOr<std::string>> result = results.Next()) {
    EXPECT_TRUE(result->ok()) << result->status();
    order.push_back(results.index());
  }
  EXPECT_THAT(order, ElementsAre(1, 0));
}

TEST_F(ExecutorTest, KeepGoingMapYieldsAFailedChunksErrorOncePerItem) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // Rejected chunks: 5 items in chunks of 2, every one NOT_FOUND, each at its own index.
  MapResults rejected =
      executor->Map("no_such_function", Numbered(5), {.chunksize = 2, .keep_going = true});
  for (size_t i = 0; i < 5; ++i) {
    std::optional<absl::StatusOr<std::string>> result = rejected.Next();
    ASSERT_TRUE(result.has_value()) << "item " << i;
    EXPECT_EQ(result->status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(rejected.index(), i);
  }
  EXPECT_FALSE(rejected.Next().has_value());

  // The same for a seeded range map, whose index is the offset from `first`.
  MapResults range = executor->MapRange(
      "no_such_function", "x", {.count = 3, .batch_size = 2, .first = 100, .keep_going = true});
  for (size_t i = 0; i < 3; ++i) {
    std::optional<absl::StatusOr<std::string>> result = range.Next();
    ASSERT_TRUE(result.has_value()) << "item " << i;
    EXPECT_EQ(result->status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(range.index(), i);
  }
  EXPECT_FALSE(range.Next().has_value());

  // A map that cannot be submitted still yields its one error, which is no item's.
  MapResults invalid = executor->Map("echo", Numbered(3), {.chunksize = 0, .keep_going = true});
  EXPECT_EQ(invalid.Next()->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(invalid.index(), MapResults::kNoIndex);
  EXPECT_FALSE(invalid.Next().has_value());

  // After shutdown every chunk is refused, so every item fails.
  executor->Shutdown(/*wait=*/true);
  MapResults refused = executor->Map("echo", Numbered(3), {.chunksize = 2, .keep_going = true});
  int refusals = 0;
  while (std::optional<absl::StatusOr<std::string>> result = refused.Next()) {
    EXPECT_EQ(result->status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(refused.index(), static_cast<size_t>(refusals));
    ++refusals;
  }
  EXPECT_EQ(refusals, 3);
}

TEST_F(ExecutorTest, KeepGoingMapEndsOnlyAtItsTimeoutAndKillStopsWhatRuns) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // Item 0 fails at once, items 1 and 2 run for ten minutes on the two workers, item 3 waits.
  MapResults results = executor->Map("sleep", {"bad", "600000", "600000", "600000"},
                                     {.timeout = absl::Seconds(2), .keep_going = true});
  std::optional<absl::StatusOr<std::string>> result = results.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(results.index(), 0u);
  result = results.Next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(result->status().message(), HasSubstr("3 of 4 results not yet returned"));
  EXPECT_EQ(results.index(), MapResults::kNoIndex) << "the timeout is no item's";
  EXPECT_FALSE(results.Next().has_value());
  // The timeout cancelled item 3; Kill() stops the two that run, or Shutdown(wait) would wait ten
  // minutes for them.
  results.Kill();
  executor->Shutdown(/*wait=*/true);
  const absl::Status idle =
      testing::AwaitPoolStatus(server_->target(), [](const v1::PoolStatus& status) {
        return status.busy_workers() == 0 && status.queued_tasks() == 0;
      });
  EXPECT_TRUE(idle.ok()) << idle;
}

TEST_F(ExecutorTest, KillFromAnotherThreadEndsAMapBeingRead) {
  const v1::PoolStatus before = PoolStatus();
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  constexpr size_t kItems = 5;
  MapResults results =
      executor->Map("sleep", std::vector<std::string>(kItems, "600000"), {.keep_going = true});
  std::vector<absl::StatusCode> codes;
  std::vector<size_t> indices;
  // The reader waits in Next() for item 0, which runs until it is killed.
  std::thread reader([&] {
    while (std::optional<absl::StatusOr<std::string>> result = results.Next()) {
      codes.push_back(result->status().code());
      indices.push_back(results.index());
    }
  });
  const absl::Status running = testing::AwaitPoolStatus(
      server_->target(), [](const v1::PoolStatus& status) { return status.busy_workers() > 0; });
  EXPECT_TRUE(running.ok()) << running;
  results.Kill();
  reader.join();
  EXPECT_THAT(
      codes, ElementsAreArray(std::vector<absl::StatusCode>(kItems, absl::StatusCode::kCancelled)));
  EXPECT_THAT(indices, ElementsAre(0, 1, 2, 3, 4));
  executor->Shutdown(/*wait=*/true);
  const v1::PoolStatus after = PoolStatus();
  EXPECT_EQ(after.tasks_cancelled() - before.tasks_cancelled(), kItems);
  EXPECT_EQ(after.tasks_succeeded() - before.tasks_succeeded(), 0u);
}

TEST_F(ExecutorTest, MapRejectsAChunksizeBelowOne) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  MapResults results = executor->Map("echo", {"a"}, {.chunksize = 0});
  EXPECT_EQ(results.Next()->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(results.Next().has_value());
}

TEST_F(ExecutorTest, MapTimeoutTripsAndCancelsTheRemainingChunks) {
  const v1::PoolStatus before = PoolStatus();
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // 40 chunks of 100 ms on 2 workers need 2 s; the map allows 250 ms.
  constexpr int kChunks = 40;
  MapResults results = executor->Map("sleep", std::vector<std::string>(kChunks, "100"),
                                     {.timeout = absl::Milliseconds(250)});
  int ok = 0;
  absl::Status error;
  while (std::optional<absl::StatusOr<std::string>> result = results.Next()) {
    if (result->ok()) {
      ++ok;
    } else {
      error = result->status();
    }
  }
  EXPECT_EQ(error.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(error.message(), HasSubstr("map timed out"));
  EXPECT_LT(ok, kChunks);
  // Once the session's tasks have all ended, most of them must have been cancelled, not run.
  executor->Shutdown(/*wait=*/true);
  const v1::PoolStatus after = PoolStatus();
  EXPECT_EQ((after.tasks_succeeded() - before.tasks_succeeded()) +
                (after.tasks_cancelled() - before.tasks_cancelled()),
            kChunks);
  EXPECT_GE(after.tasks_cancelled() - before.tasks_cancelled(), kChunks / 2);
}

TEST_F(ExecutorTest, DestroyingAnUnfinishedMapCancelsItsPendingChunks) {
  const v1::PoolStatus before = PoolStatus();
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  constexpr int kChunks = 40;
  {
    MapResults results = executor->Map("sleep", std::vector<std::string>(kChunks, "50"));
    ASSERT_TRUE(results.Next()->ok());
  }
  executor->Shutdown(/*wait=*/true);
  const v1::PoolStatus after = PoolStatus();
  EXPECT_GE(after.tasks_cancelled() - before.tasks_cancelled(), kChunks / 2);
}

// --- AsCompleted and Wait ---

TEST_F(ExecutorTest, AsCompletedYieldsDoneFuturesFirstAndDuplicatesOnce) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future slow = executor->Submit("sleep", kBusyMs);
  Future fast = executor->Submit("echo", "fast");
  ASSERT_TRUE(fast.Wait());
  std::vector<Future> yielded;
  for (absl::StatusOr<Future> future : AsCompleted({slow, fast, fast, slow})) {
    ASSERT_TRUE(future.ok()) << future.status();
    EXPECT_TRUE(future->Done());
    yielded.push_back(*future);
  }
  EXPECT_THAT(yielded, ElementsAre(fast, slow));
}

TEST_F(ExecutorTest, AsCompletedTimeoutNamesTheUnfinished) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future slow = executor->Submit("sleep", kBusyMs);
  Future fast = executor->Submit("echo", "fast");
  ASSERT_TRUE(fast.Wait());
  CompletedFutures completed = AsCompleted({slow, fast}, absl::Milliseconds(50));
  EXPECT_EQ(**completed.Next(), fast);
  const absl::StatusOr<Future> timed_out = *completed.Next();
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(timed_out.status().message(), HasSubstr("1 (of 2) futures unfinished"));
  EXPECT_FALSE(completed.Next().has_value());
}

TEST_F(ExecutorTest, WaitFirstCompletedReturnsOnTheFirstDone) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future slow = executor->Submit("sleep", kBusyMs);
  Future fast = executor->Submit("echo", "fast");
  const DoneAndNotDone split =
      Wait({slow, fast}, absl::InfiniteDuration(), ReturnWhen::kFirstCompleted);
  EXPECT_THAT(split.done, ElementsAre(fast));
  EXPECT_THAT(split.not_done, ElementsAre(slow));
}

TEST_F(ExecutorTest, WaitFirstExceptionReturnsOnAnErrorButNotOnACancel) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  {
    Future slow = executor->Submit("sleep", kBusyMs);
    Future failing = executor->Submit("fail", "boom");
    const DoneAndNotDone split =
        Wait({slow, failing}, absl::InfiniteDuration(), ReturnWhen::kFirstException);
    EXPECT_THAT(split.done, ElementsAre(failing));
    EXPECT_THAT(split.not_done, ElementsAre(slow));
    ASSERT_TRUE(slow.Wait());
  }
  {
    std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
    Future cancelled = executor->Submit("echo", "cancelled");
    ASSERT_TRUE(cancelled.Cancel());
    const DoneAndNotDone split =
        Wait({cancelled, busy[0], busy[1]}, absl::InfiniteDuration(), ReturnWhen::kFirstException);
    EXPECT_THAT(split.done, ElementsAre(cancelled, busy[0], busy[1]));
    EXPECT_THAT(split.not_done, ElementsAre());
  }
}

TEST_F(ExecutorTest, WaitAllCompletedAndWaitTimeout) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future slow = executor->Submit("sleep", kBusyMs);
  Future fast = executor->Submit("echo", "fast");
  DoneAndNotDone split = Wait({slow, fast}, absl::Milliseconds(50));
  EXPECT_THAT(split.not_done, ElementsAre(slow));
  split = Wait({slow, fast, slow});
  EXPECT_THAT(split.done, ElementsAre(slow, fast));
  EXPECT_THAT(split.not_done, ElementsAre());
  EXPECT_TRUE(Wait({}).done.empty());
}

// --- Shutdown ---

TEST_F(ExecutorTest, ShutdownWaitBlocksUntilEveryFutureIsDone) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> futures;
  for (int i = 0; i < 4; ++i) futures.push_back(executor->Submit("sleep", "100"));
  executor->Shutdown(/*wait=*/true);
  for (const Future& future : futures) {
    EXPECT_TRUE(future.Done());
    EXPECT_TRUE(future.Exception(absl::ZeroDuration()).ok());
  }
}

TEST_F(ExecutorTest, ShutdownWithoutWaitLetsTasksFinishAndRefusesSubmits) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> futures = OccupyWorkers(*executor, kBusyMs);
  futures.push_back(executor->Submit("echo", "queued"));
  executor->Shutdown(/*wait=*/false);
  const absl::Status refused = executor->Submit("echo", "late").Exception();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("cannot submit after shutdown"));
  EXPECT_EQ(executor->Map("echo", {"late"}).Next()->status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(executor->Bootup().code(), absl::StatusCode::kFailedPrecondition);
  for (const Future& future : futures) EXPECT_TRUE(future.Exception().ok());
  executor->Shutdown(/*wait=*/false);  // Twice is fine.
}

TEST_F(ExecutorTest, ShutdownCancelFuturesWithoutWaitCancelsOnlyPendingOnes) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
  std::vector<Future> pending = {executor->Submit("echo", "a"), executor->Submit("echo", "b")};
  executor->Shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (const Future& future : pending) EXPECT_TRUE(future.Cancelled());
  for (const Future& future : busy) {
    EXPECT_FALSE(future.Cancelled());
    EXPECT_TRUE(future.Result().ok());
  }
}

TEST_F(ExecutorTest, ShutdownCancelFuturesAndWait) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
  Future pending = executor->Submit("echo", "a");
  executor->Shutdown(/*wait=*/true, /*cancel_futures=*/true);
  EXPECT_TRUE(pending.Cancelled());
  for (const Future& future : busy) {
    EXPECT_EQ(future.state(), FutureState::kFinished);
    EXPECT_TRUE(future.Exception(absl::ZeroDuration()).ok());
  }
}

TEST_F(ExecutorTest, LaterShutdownWithCancelFuturesStillCancels) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kBusyMs);
  Future pending = executor->Submit("echo", "a");
  executor->Shutdown(/*wait=*/false);
  executor->Shutdown(/*wait=*/false, /*cancel_futures=*/true);
  EXPECT_TRUE(pending.Cancelled());
  for (const Future& future : busy) EXPECT_TRUE(future.Result().ok());
}

TEST_F(ExecutorTest, DestroyingTheExecutorWaitsForItsFutures) {
  std::vector<Future> futures;
  {
    std::unique_ptr<Executor> executor = Connect();
    ASSERT_NE(executor, nullptr);
    for (int i = 0; i < 3; ++i) futures.push_back(executor->Submit("sleep", "100"));
  }
  for (const Future& future : futures) {
    EXPECT_TRUE(future.Done());
    EXPECT_TRUE(future.Exception(absl::ZeroDuration()).ok());
  }
}

// --- Sessions ---

TEST_F(ExecutorTest, OneExecutorsShutdownAndCancelLeaveAnothersFuturesAlone) {
  std::unique_ptr<Executor> a = Connect("a");
  std::unique_ptr<Executor> b = Connect("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<Future> busy = OccupyWorkers(*a, kBusyMs);  // Task ids 1 and 2 of session a.
  Future a_pending = a->Submit("echo", "a");              // Id 3.
  std::vector<Future> b_futures;
  for (int i = 0; i < 5; ++i) b_futures.push_back(b->Submit("echo", absl::StrCat("b", i)));
  ASSERT_EQ(a_pending.task_id(), b_futures[2].task_id()) << "ids are per session";

  a->Shutdown(/*wait=*/false, /*cancel_futures=*/true);
  EXPECT_TRUE(a_pending.Cancelled());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(b_futures[i].Result().value_or(""), absl::StrCat("b", i));
  }
  EXPECT_TRUE(b->Submit("echo", "b still open").Result().ok());
  a.reset();
  b->Shutdown(/*wait=*/true);
  for (const Future& future : busy) EXPECT_TRUE(future.Exception().ok());
}

TEST_F(ExecutorTest, ALightSessionIsNotStuckBehindAHeavyOne) {
  std::unique_ptr<Executor> heavy = Connect("heavy");
  std::unique_ptr<Executor> light = Connect("light");
  ASSERT_NE(heavy, nullptr);
  ASSERT_NE(light, nullptr);
  constexpr int kHeavyTasks = 2000;
  std::vector<Future> heavy_futures;
  for (int i = 0; i < kHeavyTasks; ++i) heavy_futures.push_back(heavy->Submit("sleep", "1"));
  // The cancel's answer comes after the service took every earlier submit of the session: all
  // of the heavy session's tasks are queued before the light session submits anything.
  ASSERT_TRUE(heavy_futures.back().Cancel());

  std::vector<Future> light_futures;
  for (int i = 0; i < 10; ++i) light_futures.push_back(light->Submit("sleep", "1"));
  const DoneAndNotDone light_done = Wait(light_futures);
  ASSERT_EQ(light_done.done.size(), light_futures.size());
  for (const Future& future : light_futures) EXPECT_TRUE(future.Exception().ok());

  int heavy_unfinished = 0;
  for (const Future& future : heavy_futures) heavy_unfinished += future.Done() ? 0 : 1;
  EXPECT_GT(heavy_unfinished, kHeavyTasks / 2);
  heavy->Shutdown(/*wait=*/true, /*cancel_futures=*/true);
}

TEST_F(ExecutorTest, ManyThreadsSubmitMapAndAddCallbacksThroughOneExecutor) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  constexpr int kThreads = 8;
  constexpr int kTasksPerThread = 200;
  std::atomic<int> callbacks{0};
  std::vector<std::vector<Future>> futures(kThreads);
  std::vector<std::vector<std::string>> mapped(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasksPerThread; ++i) {
        Future future = executor->Submit("echo", absl::StrCat(t, "/", i));
        future.AddDoneCallback([&](const Future&) { callbacks.fetch_add(1); });
        futures[t].push_back(std::move(future));
      }
      mapped[t] = Drain(executor->Map("echo", Numbered(50), {.chunksize = 7}));
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_THAT(mapped[t], ElementsAreArray(Numbered(50)));
    for (int i = 0; i < kTasksPerThread; ++i) {
      EXPECT_EQ(futures[t][i].Result().value_or(""), absl::StrCat(t, "/", i));
    }
  }
  executor->Shutdown(/*wait=*/true);
  EXPECT_EQ(callbacks.load(), kThreads * kTasksPerThread);
}

TEST_F(ExecutorTest, BootupReportsAReadyPool) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  EXPECT_TRUE(executor->Bootup(/*wait=*/true).ok());
  EXPECT_TRUE(executor->Bootup(/*wait=*/false).ok());
  EXPECT_EQ(executor->pool_state(), PoolState::kReady);
  EXPECT_EQ(executor->workers(), 2);
}

// --- Bootup, against servers of their own ---

std::unique_ptr<Executor> ConnectTo(const testing::ServerProcess& server) {
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "executor_test"});
  EXPECT_TRUE(executor.ok()) << executor.status();
  return executor.ok() ? *std::move(executor) : nullptr;
}

TEST(ExecutorBootupTest, BootupWaitsForABootingPoolAndQueuedTasksRun) {
  testing::ServerProcess server;
  // The initializer holds the pool in BOOTING long enough for the client to arrive first.
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--initializer=sleep", "--initargs=1500"},
                          .await_ready = false})
                  .ok());
  {
    std::unique_ptr<Executor> executor = ConnectTo(server);
    ASSERT_NE(executor, nullptr);
    EXPECT_EQ(executor->pool_state(), PoolState::kBooting);
    EXPECT_TRUE(executor->Bootup(/*wait=*/false).ok());
    Future queued = executor->Submit("echo", "queued during boot");
    EXPECT_TRUE(executor->Bootup(/*wait=*/true).ok());
    EXPECT_EQ(executor->pool_state(), PoolState::kReady);
    EXPECT_EQ(queued.Result().value_or(""), "queued during boot");
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

TEST(ExecutorBootupTest, BootupReportsABrokenPoolAsBrokenExecutor) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {"--initializer=fail", "--initargs=no database"}}).ok());
  {
    std::unique_ptr<Executor> executor = ConnectTo(server);
    ASSERT_NE(executor, nullptr);
    const absl::Status bootup = executor->Bootup(/*wait=*/true);
    EXPECT_EQ(bootup.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StartsWith(bootup.message(), "BrokenExecutor: ")) << bootup;
    EXPECT_THAT(bootup.message(), HasSubstr("initializer 'fail' failed: no database"));
    EXPECT_THAT(bootup.message(), Not(HasSubstr("BrokenExecutor: BrokenExecutor")));
    EXPECT_EQ(executor->pool_state(), PoolState::kBroken);
    const absl::Status task = executor->Submit("echo", "x").Exception();
    EXPECT_EQ(task.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StartsWith(task.message(), "BrokenExecutor: ")) << task;
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
}

// --- The OpenMP example, as a separate client process ---

TEST_F(ExecutorTest, OpenMpExampleChecksEveryResultFromFourThreads) {
  const std::string command =
      absl::StrCat("OMP_NUM_THREADS=4 '", testing::RunfilePath("examples/openmp/openmp_client"),
                   "' --endpoint '", server_->target(), "' --tasks 1000");
  absl::StatusOr<testing::CommandResult> run = testing::RunCommand(command);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->output;
  EXPECT_THAT(run->output, HasSubstr("4 threads submitted 1000 tasks"));
  EXPECT_THAT(run->output, HasSubstr("1400 of 1400 results correct"));
}

}  // namespace
}  // namespace mpigate
