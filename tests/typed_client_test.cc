// The client beyond concurrent.futures, end to end: typed tasks (client/typed.h) including typed
// range maps, payload type checks, ListFunctions, progress reports, Interrupt and queue timeouts.
// One real mpigate-server with 2 MPI workers and `exec` enabled is shared by the suite.
//
// Tests that need a task to stay PENDING occupy both workers with `sleep` tasks that would run
// for ten minutes, wait until those are RUNNING (Future::WaitStarted), and interrupt them at the
// end: nothing depends on how long a step takes. The server hands each worker one task at a time
// (--max-tasks-per-worker=1): with prefetch, a worker whose recent tasks were short would take the
// next one into its backlog behind the sleep, where it counts as running.
#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/executor.h"
#include "client/typed.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/exec.pb.h"
#include "mpigate/v1/gateway.pb.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A sleep that outlasts any test: only an interrupt ends it in time.
constexpr char kForeverMs[] = "600000";

class TypedClientTest : public testing::SharedServerTest<TypedClientTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {.workers = 2, .flags = {"--allow_exec", "--max-tasks-per-worker=1"}};
  }
  static constexpr char kClientName[] = "typed_client_test";

 protected:
  static void Release(std::vector<Future>& busy) {
    for (Future& future : busy) {
      EXPECT_TRUE(future.Interrupt());
      EXPECT_EQ(future.Exception().code(), absl::StatusCode::kCancelled);
    }
  }
};

v1::ExecRequest Command(std::vector<std::string> argv) {
  v1::ExecRequest request;
  for (std::string& arg : argv) request.add_argv(std::move(arg));
  return request;
}

// A message that is not an ExecRequest but whose bytes parse as one that runs /bin/echo
// (FunctionInfo.name and ExecRequest.argv are both string field 1): only the payload type tells
// them apart, so a task that is not rejected would run.
v1::FunctionInfo EchoInDisguise() {
  v1::FunctionInfo message;
  message.set_name("/bin/echo");
  return message;
}

// --- Typed tasks ---

// The only typed built-in: `exec` (worker/exec_task.h, proto/mpigate/v1/exec.proto).
TEST_F(TypedClientTest, SubmitTypedRoundTripsThroughExec) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  TypedFuture<v1::ExecResponse> future =
      SubmitTyped<v1::ExecResponse>(*executor, "exec", Command({"/bin/echo", "hi"}));
  const absl::StatusOr<v1::ExecResponse> response = future.Result();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->exit_code(), 0);
  EXPECT_EQ(response->signal(), 0);
  EXPECT_EQ(response->stdout(), "hi\n");
  EXPECT_THAT(response->stderr(), IsEmpty());
  EXPECT_TRUE(future.Done());
  EXPECT_EQ(future.future().state(), FutureState::kFinished);
}

TEST_F(TypedClientTest, MapTypedRunsExecInInputOrder) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<v1::ExecRequest> requests;
  std::vector<std::string> expected;
  for (int i = 0; i < 5; ++i) {
    requests.push_back(Command({"/bin/echo", absl::StrCat("line ", i)}));
    expected.push_back(absl::StrCat("line ", i, "\n"));
  }
  std::vector<std::string> outputs;
  for (absl::StatusOr<v1::ExecResponse> response :
       MapTyped<v1::ExecResponse>(*executor, "exec", requests, {.chunksize = 2})) {
    ASSERT_TRUE(response.ok()) << response.status();
    outputs.push_back(response->stdout());
  }
  EXPECT_THAT(outputs, ElementsAreArray(expected));
}

TEST_F(TypedClientTest, MapTypedDecodesEveryResultInInputOrder) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // `echo` is untyped: it returns each request's bytes, which decode as the same message.
  std::vector<v1::ExecResponse> requests(10);
  std::vector<int> expected;
  for (int i = 0; i < static_cast<int>(requests.size()); ++i) {
    requests[i].set_exit_code(i);
    requests[i].set_stdout(absl::StrCat("out ", i));
    expected.push_back(i);
  }
  for (const int chunksize : {1, 3, 10}) {
    SCOPED_TRACE(absl::StrCat("chunksize ", chunksize));
    std::vector<int> codes;
    for (absl::StatusOr<v1::ExecResponse> response :
         MapTyped<v1::ExecResponse>(*executor, "echo", requests, {.chunksize = chunksize})) {
      ASSERT_TRUE(response.ok()) << response.status();
      EXPECT_EQ(response->stdout(), absl::StrCat("out ", response->exit_code()));
      codes.push_back(response->exit_code());
    }
    EXPECT_THAT(codes, ElementsAreArray(expected));
  }
}

// One request, run once per item of the range: a seeded map's typed form.
TEST_F(TypedClientTest, MapRangeTypedRunsExecOncePerItem) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<std::string> outputs;
  for (absl::StatusOr<v1::ExecResponse> response : MapRangeTyped<v1::ExecResponse>(
           *executor, "exec", Command({"/bin/echo", "item"}), {.count = 5, .batch_size = 2})) {
    ASSERT_TRUE(response.ok()) << response.status();
    outputs.push_back(response->stdout());
  }
  EXPECT_THAT(outputs, ElementsAreArray(std::vector<std::string>(5, "item\n")));
}

TEST_F(TypedClientTest, PayloadOfAnotherTypeIsRejectedWithInvalidArgument) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // Valid ExecRequest bytes, declared as something else.
  Future declared_empty = executor->Submit("exec", Command({"/bin/echo"}).SerializeAsString(),
                                           {.payload_type = "google.protobuf.Empty"});
  EXPECT_EQ(declared_empty.Exception().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(declared_empty.state(), FutureState::kFinished);

  // The typed helpers declare the request's own type, for a single task and for every chunk.
  TypedFuture<v1::ExecResponse> typed =
      SubmitTyped<v1::ExecResponse>(*executor, "exec", EchoInDisguise());
  EXPECT_EQ(typed.Result().status().code(), absl::StatusCode::kInvalidArgument);

  TypedMapResults<v1::ExecResponse> mapped = MapTyped<v1::ExecResponse>(
      *executor, "exec", std::vector<v1::FunctionInfo>(4, EchoInDisguise()), {.chunksize = 2});
  std::optional<absl::StatusOr<v1::ExecResponse>> first = mapped.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(mapped.Next().has_value()) << "an error ends the iteration";

  // And for every batch of a range map.
  TypedMapResults<v1::ExecResponse> ranged = MapRangeTyped<v1::ExecResponse>(
      *executor, "exec", EchoInDisguise(), {.count = 4, .batch_size = 2});
  first = ranged.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ranged.Next().has_value()) << "an error ends the iteration";

  // The same bytes under the right type are not rejected for their type.
  Future declared_right = executor->Submit("exec", Command({"/bin/echo"}).SerializeAsString(),
                                           {.payload_type = "mpigate.v1.ExecRequest"});
  EXPECT_NE(declared_right.Exception().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TypedClientTest, ResultThatDoesNotParseIsInternalAndTaskErrorsPassAsTheyAre) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // A lone 0xff is a truncated field tag: no message parses from it.
  TypedFuture<v1::ExecResponse> garbage(executor->Submit("echo", "\xff"));
  const absl::StatusOr<v1::ExecResponse> result = garbage.Result();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(result.status().message(), HasSubstr("is not a valid mpigate.v1.ExecResponse"));

  TypedFuture<v1::ExecResponse> failed(executor->Submit("fail", "boom"));
  EXPECT_EQ(failed.Result().status(), failed.future().Exception());
  EXPECT_EQ(failed.Result().status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(failed.Result().status().message(), HasSubstr("boom"));

  // Through a map: field 3 is ExecResponse.stdout, bytes, and FunctionInfo.request_type, a string,
  // which proto3 requires to be UTF-8; so an echoed stdout of "\xff" does not parse as the latter.
  std::vector<v1::ExecResponse> requests(3);
  requests[1].set_stdout("\xff");
  TypedMapResults<v1::FunctionInfo> mapped =
      MapTyped<v1::FunctionInfo>(*executor, "echo", requests);
  EXPECT_TRUE(mapped.Next()->ok());
  const absl::StatusOr<v1::FunctionInfo> bad = *mapped.Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(bad.status().message(), HasSubstr("is not a valid mpigate.v1.FunctionInfo"));
  EXPECT_FALSE(mapped.Next().has_value()) << "an error ends the iteration";
  EXPECT_EQ(mapped.index(), MapResults::kNoIndex);

  // With keep_going every item has its outcome, each with its input's index, and the iteration
  // goes on past the one that does not parse.
  TypedMapResults<v1::FunctionInfo> kept =
      MapTyped<v1::FunctionInfo>(*executor, "echo", requests, {.keep_going = true});
  std::vector<std::pair<size_t, absl::StatusCode>> outcomes;
  while (std::optional<absl::StatusOr<v1::FunctionInfo>> next = kept.Next()) {
    outcomes.emplace_back(kept.index(), next->status().code());
  }
  EXPECT_THAT(outcomes, ElementsAre(std::pair(0u, absl::StatusCode::kOk),
                                    std::pair(1u, absl::StatusCode::kInternal),
                                    std::pair(2u, absl::StatusCode::kOk)));
}

TEST_F(TypedClientTest, KillOfATypedMapEndsItsTasksCancelled) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  // Sleeps far longer than the test may take: only Kill() ends them.
  TypedMapResults<v1::ExecResponse> sleeping = MapTyped<v1::ExecResponse>(
      *executor, "exec", std::vector<v1::ExecRequest>(2, Command({"/bin/sleep", "3600"})),
      {.keep_going = true});
  sleeping.Kill();
  int cancelled = 0;
  while (std::optional<absl::StatusOr<v1::ExecResponse>> next = sleeping.Next()) {
    EXPECT_EQ(next->status().code(), absl::StatusCode::kCancelled) << next->status();
    ++cancelled;
  }
  EXPECT_EQ(cancelled, 2);
}

// --- ListFunctions ---

TEST_F(TypedClientTest, ListFunctionsDescribesBuiltinsAndExecsTypes) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  const absl::StatusOr<std::vector<FunctionInfo>> functions = executor->ListFunctions();
  ASSERT_TRUE(functions.ok()) << functions.status();
  std::vector<std::string> names;
  const FunctionInfo* echo = nullptr;
  const FunctionInfo* exec = nullptr;
  for (const FunctionInfo& function : *functions) {
    names.push_back(function.name);
    EXPECT_THAT(function.description, Not(IsEmpty())) << function.name;
    if (function.name == "echo") echo = &function;
    if (function.name == "exec") exec = &function;
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const char* builtin : {"echo", "fail", "getcwd", "getenv", "setenv", "sleep", "spin"}) {
    EXPECT_THAT(names, ::testing::Contains(builtin));
  }
  ASSERT_NE(echo, nullptr);
  EXPECT_THAT(echo->request_type, IsEmpty());
  EXPECT_THAT(echo->response_type, IsEmpty());
  ASSERT_NE(exec, nullptr);
  EXPECT_EQ(exec->request_type, "mpigate.v1.ExecRequest");
  EXPECT_EQ(exec->response_type, "mpigate.v1.ExecResponse");
  // No built-in is a gang function (tests/gang_test.cc lists some that are); the Python runtime's
  // python.gang is one.
  for (const FunctionInfo& function : *functions) {
    EXPECT_EQ(function.gang, function.name == "python.gang") << function.name;
  }

  executor->Shutdown();
  EXPECT_TRUE(executor->ListFunctions().ok()) << "a unary call, not part of the session";
}

TEST(TypedClientBootTest, ListFunctionsIsUnavailableWhileThePoolBoots) {
  testing::ServerProcess server;
  // The initializer holds the pool in BOOTING long enough for the client to arrive first.
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--initializer=sleep", "--initargs=1500"},
                          .await_ready = false})
                  .ok());
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "typed_client_test"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    ASSERT_EQ((*executor)->pool_state(), PoolState::kBooting);
    EXPECT_EQ((*executor)->ListFunctions().status().code(), absl::StatusCode::kUnavailable);
    ASSERT_TRUE((*executor)->Bootup(/*wait=*/true).ok());
    const absl::StatusOr<std::vector<FunctionInfo>> functions = (*executor)->ListFunctions();
    ASSERT_TRUE(functions.ok()) << functions.status();
    EXPECT_THAT(*functions, Not(IsEmpty()));
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// --- Progress ---

// What a future's progress and done callbacks saw; they run on the executor's reader thread.
struct CallbackLog {
  bool ReportedOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return reports > 0 || done; }

  absl::Mutex mu;
  int reports ABSL_GUARDED_BY(mu) = 0;
  int reports_after_done ABSL_GUARDED_BY(mu) = 0;
  bool done ABSL_GUARDED_BY(mu) = false;
  FutureState state_at_first_report ABSL_GUARDED_BY(mu) = FutureState::kPending;
  std::string first_message ABSL_GUARDED_BY(mu);
  double last_fraction ABSL_GUARDED_BY(mu) = -1;
  bool fractions_in_order ABSL_GUARDED_BY(mu) = true;
};

TEST_F(TypedClientTest, ProgressOfARunningSleepReachesCallbacksUntilItIsDone) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future quiet = executor->Submit("echo", "no progress");
  ASSERT_TRUE(quiet.Result().ok());
  EXPECT_FALSE(quiet.progress().has_value());

  CallbackLog log;
  Future sleeping = executor->Submit("sleep", "1500");
  sleeping.AddProgressCallback([&log](const Future& future, const TaskProgress& progress) {
    absl::MutexLock lock(&log.mu);
    if (log.done) ++log.reports_after_done;
    if (log.reports++ == 0) {
      log.state_at_first_report = future.state();
      log.first_message = progress.message;
    }
    if (progress.fraction < log.last_fraction || progress.fraction < 0 || progress.fraction > 1) {
      log.fractions_in_order = false;
    }
    log.last_fraction = progress.fraction;
  });
  sleeping.AddDoneCallback([&log](const Future&) {
    absl::MutexLock lock(&log.mu);
    log.done = true;
  });
  {
    // The first report, or the end of a task that never reported (a failure, not a hang).
    absl::MutexLock lock(&log.mu);
    log.mu.Await(absl::Condition(&log, &CallbackLog::ReportedOrDone));
    EXPECT_GT(log.reports, 0) << "the sleep ended without a progress report";
    EXPECT_EQ(log.state_at_first_report, FutureState::kRunning);
    EXPECT_THAT(log.first_message, HasSubstr("slept"));
  }
  ASSERT_TRUE(sleeping.Result().ok());

  absl::MutexLock lock(&log.mu);
  EXPECT_TRUE(log.fractions_in_order);
  EXPECT_EQ(log.reports_after_done, 0);
  const std::optional<TaskProgress> latest = sleeping.progress();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->fraction, log.last_fraction) << "progress() is the latest report";

  // A done future reports nothing more: a callback added now is never called.
  sleeping.AddProgressCallback(
      [](const Future&, const TaskProgress&) { ADD_FAILURE() << "called after done"; });
}

// --- Interrupt ---

TEST_F(TypedClientTest, InterruptEndsARunningSleepCancelled) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future sleeping = executor->Submit("sleep", kForeverMs);
  // Its first progress report: it runs (a task handed to a worker may still wait in its backlog,
  // where an interrupt drops it instead).
  std::atomic<bool> seen{false};
  absl::Notification reported;
  const auto report = [&seen, &reported] {
    if (!seen.exchange(true)) reported.Notify();
  };
  sleeping.AddProgressCallback([&report](const Future&, const TaskProgress&) { report(); });
  // A report that came before the callback was added is in progress() by now.
  if (sleeping.progress().has_value()) report();
  reported.WaitForNotification();
  EXPECT_FALSE(sleeping.Cancel()) << "Cancel() leaves a running task alone";
  EXPECT_TRUE(sleeping.Interrupt());
  const absl::Status error = sleeping.Exception();
  EXPECT_EQ(error.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(error.message(), HasSubstr("sleep interrupted after"));
  EXPECT_EQ(sleeping.state(), FutureState::kCancelled);
  EXPECT_TRUE(sleeping.Interrupt()) << "a cancelled future stays cancelled";
}

TEST_F(TypedClientTest, InterruptCancelsAPendingTaskAsCancelDoes) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  std::vector<Future> busy = OccupyWorkers(*executor, kForeverMs);
  Future pending = executor->Submit("echo", "never");
  EXPECT_EQ(pending.state(), FutureState::kPending);
  EXPECT_TRUE(pending.Interrupt());
  EXPECT_EQ(pending.state(), FutureState::kCancelled) << "cancelled when Interrupt() returns";
  EXPECT_EQ(pending.Exception().code(), absl::StatusCode::kCancelled);
  Release(busy);
}

TEST_F(TypedClientTest, InterruptOfAFinishedFutureReturnsFalse) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future finished = executor->Submit("echo", "done");
  ASSERT_EQ(finished.Result().value_or(""), "done");
  EXPECT_FALSE(finished.Interrupt());
  EXPECT_EQ(finished.state(), FutureState::kFinished);
  EXPECT_EQ(finished.Result().value_or(""), "done");
}

// --- Queue timeout ---

TEST_F(TypedClientTest, QueueTimeoutFailsATaskNoWorkerTookInTime) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future in_time = executor->Submit("echo", "in time", {.queue_timeout = absl::Seconds(60)});
  EXPECT_EQ(in_time.Result().value_or(""), "in time");

  std::vector<Future> busy = OccupyWorkers(*executor, kForeverMs);
  Future late = executor->Submit("echo", "late", {.queue_timeout = absl::Milliseconds(50)});
  // Typed submissions pass their options on.
  TypedFuture<v1::ExecResponse> typed_late = SubmitTyped<v1::ExecResponse>(
      *executor, "exec", Command({"/bin/echo"}), {.queue_timeout = absl::Milliseconds(50)});
  for (const Future& future : {late, typed_late.future()}) {
    // Bounded so that a timeout the service never applied fails the test instead of hanging it.
    const absl::Status error = future.Exception(absl::Minutes(1));
    EXPECT_EQ(error.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(error.message(), Not(HasSubstr("waiting for task")))
        << "the service's queue timeout, not a client-side wait";
  }
  Release(busy);
}

}  // namespace
}  // namespace mpigate
