// End-to-end tests of the pool's options and life, through a real mpigate-server: the worker
// initializer (and the broken pool when it fails), worker environment and working directory,
// MPI_Info keys for the spawn, booting while clients already submit, world mode under mpiexec,
// and stopping the service by RPC and by signal past the drain grace period.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <climits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "mpigate/v1/exec.pb.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

std::unique_ptr<v1::Gateway::Stub> StubFor(const testing::ServerProcess& server) {
  return v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
}

// Runs one task through the Run RPC; the call's own status must be OK.
v1::TaskOutcome RunOne(v1::Gateway::Stub& stub, const std::string& function,
                       const std::string& payload) {
  grpc::ClientContext context;
  v1::RunRequest request;
  request.mutable_task()->set_function(function);
  request.mutable_task()->set_payload(payload);
  v1::TaskOutcome outcome;
  const grpc::Status status = stub.Run(&context, request, &outcome);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return outcome;
}

v1::PoolStatus Status(v1::Gateway::Stub& stub) {
  grpc::ClientContext context;
  v1::PoolStatus status;
  EXPECT_TRUE(stub.GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  return status;
}

// Submits `count` tasks in one message, so that every idle worker gets one at once, shuts the
// session down and returns every outcome.
std::vector<v1::TaskOutcome> RunBatch(v1::Gateway::Stub& stub, const std::string& function,
                                      const std::string& payload, int count) {
  testing::RawSession session(stub);
  v1::SessionRequest request;
  for (int id = 1; id <= count; ++id) {
    v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
    task.set_task_id(static_cast<uint64_t>(id));
    task.set_function(function);
    task.set_payload(payload);
  }
  session.Send(request);
  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  EXPECT_TRUE(session.ReadToEnd().ok());
  std::vector<v1::TaskOutcome> outcomes;
  for (const auto& [id, outcome] : session.outcomes()) outcomes.push_back(outcome);
  EXPECT_EQ(outcomes.size(), static_cast<size_t>(count));
  return outcomes;
}

std::set<int> WorkersOf(const std::vector<v1::TaskOutcome>& outcomes) {
  std::set<int> workers;
  for (const v1::TaskOutcome& outcome : outcomes) workers.insert(outcome.worker());
  return workers;
}

std::set<std::string> ResultsOf(const std::vector<v1::TaskOutcome>& outcomes) {
  std::set<std::string> results;
  for (const v1::TaskOutcome& outcome : outcomes) {
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.error().message();
    results.insert(outcome.result());
  }
  return results;
}

void ExpectCleanExit(testing::ServerProcess& server, int signal_number = SIGTERM) {
  absl::StatusOr<testing::ServerExit> exit = server.Stop(signal_number);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text, HasSubstr("stopped cleanly"));
}

// A fresh directory, by its real path (what getcwd reports).
std::string MakeTempDirectory() {
  char name[] = "/tmp/mpigate-wdir-XXXXXX";
  EXPECT_NE(mkdtemp(name), nullptr);
  char real[PATH_MAX];
  EXPECT_NE(realpath(name, real), nullptr);
  return real;
}

TEST(PoolOptionsTest, InitializerRunsWithItsArgumentsOnEveryWorkerBeforeAnyTask) {
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--initializer=setenv",
                                    "--initargs=MPIGATE_INIT=set by the initializer"}})
                  .ok());
  auto stub = StubFor(server);
  EXPECT_EQ(Status(*stub).state(), v1::POOL_STATE_READY);
  const std::vector<v1::TaskOutcome> outcomes = RunBatch(*stub, "getenv", "MPIGATE_INIT", 20);
  EXPECT_THAT(ResultsOf(outcomes), UnorderedElementsAre("set by the initializer"));
  EXPECT_THAT(WorkersOf(outcomes), UnorderedElementsAre(0, 1));
  ExpectCleanExit(server);
}

TEST(PoolOptionsTest, FailingInitializerBreaksThePoolAndStatusSaysWhy) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {"--initializer=fail", "--initargs=no database"}}).ok());
  auto stub = StubFor(server);
  const v1::PoolStatus status = Status(*stub);
  EXPECT_EQ(status.state(), v1::POOL_STATE_BROKEN);
  EXPECT_THAT(status.state_reason(), HasSubstr("initializer 'fail' failed: no database"));

  testing::RawSession session(*stub);
  EXPECT_EQ(session.opened().pool().state(), v1::POOL_STATE_BROKEN);
  session.Submit(1, "echo", "x");
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_EQ(reply.rejected().rejections_size(), 1);
  EXPECT_EQ(reply.rejected().rejections(0).code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(reply.rejected().rejections(0).message(),
              AllOf(StartsWith("BrokenExecutor: "), HasSubstr("no database")));

  grpc::ClientContext context;
  v1::RunRequest request;
  request.mutable_task()->set_function("echo");
  v1::TaskOutcome outcome;
  const grpc::Status run = stub->Run(&context, request, &outcome);
  EXPECT_EQ(run.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(run.error_message(), StartsWith("BrokenExecutor: "));
  ExpectCleanExit(server);
}

TEST(PoolOptionsTest, TasksSubmittedWhileThePoolBootsRunOnceItIsReady) {
  testing::ServerProcess server;
  // The initializer holds the pool in BOOTING long enough for a client to arrive first.
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--initializer=sleep", "--initargs=1500"},
                          .await_ready = false})
                  .ok());
  auto stub = StubFor(server);
  testing::RawSession session(*stub);
  EXPECT_EQ(session.opened().pool().state(), v1::POOL_STATE_BOOTING);
  EXPECT_EQ(session.opened().pool().workers(), 2u);
  session.Submit(1, "echo", "queued during boot");
  session.Submit(2, "nonesuch", "");
  EXPECT_TRUE(session.AwaitPoolState(v1::POOL_STATE_READY));
  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  EXPECT_TRUE(session.ReadToEnd().ok());
  ASSERT_EQ(session.outcomes().size(), 2u);
  EXPECT_EQ(session.outcomes().at(1).result(), "queued during boot");
  // Names are checked once the workers have said what they have.
  EXPECT_EQ(session.outcomes().at(2).error().code(), grpc::StatusCode::NOT_FOUND);
  ExpectCleanExit(server);
}

TEST(PoolOptionsTest, WorkersGetTheirEnvironmentAndWorkingDirectory) {
  const std::string wdir = MakeTempDirectory();
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--worker-env", "MPIGATE_A=1", "--worker-env=MPIGATE_B=x,y=z",
                                    absl::StrCat("--worker-wdir=", wdir)}})
                  .ok());
  auto stub = StubFor(server);
  EXPECT_THAT(ResultsOf(RunBatch(*stub, "getenv", "MPIGATE_A", 8)), UnorderedElementsAre("1"));
  EXPECT_THAT(ResultsOf(RunBatch(*stub, "getenv", "MPIGATE_B", 8)), UnorderedElementsAre("x,y=z"));
  EXPECT_THAT(ResultsOf(RunBatch(*stub, "getcwd", "", 8)), UnorderedElementsAre(wdir));
  ExpectCleanExit(server);
  rmdir(wdir.c_str());
}

TEST(PoolOptionsTest, SpawnInfoKeysReachTheSpawn) {
  const std::string wdir = MakeTempDirectory();
  testing::ServerProcess server;
  // "wdir" is an MPI_Comm_spawn info key that Open MPI acts on.
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {"--spawn-info", absl::StrCat("wdir=", wdir)}}).ok());
  auto stub = StubFor(server);
  EXPECT_THAT(ResultsOf(RunBatch(*stub, "getcwd", "", 8)), UnorderedElementsAre(wdir));
  ExpectCleanExit(server);
  rmdir(wdir.c_str());
}

TEST(PoolOptionsTest, MalformedOptionsFailStartupWithAClearMessage) {
  for (const std::string& flag :
       {std::string("--worker-env=NO_EQUALS_SIGN"), std::string("--spawn-info=novalue")}) {
    testing::ServerProcess server;
    const absl::Status started = server.Start({.workers = 1, .flags = {flag}});
    EXPECT_FALSE(started.ok()) << flag;
    EXPECT_THAT(std::string(started.message()), HasSubstr("=VALUE")) << flag;
  }
}

// The directory Bazel put the test task libraries in.
std::string TestLibraryDirectory() {
  const std::string path = testing::RunfilePath("tests/testdata/libsample_tasks.so");
  return path.substr(0, path.rfind('/'));
}

TEST(PoolOptionsTest, TaskLibrariesAreFoundOnTheSearchPath) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server
          .Start({.workers = 2,
                  .flags = {"--task-lib=libsample_tasks.so",
                            absl::StrCat("--task-lib-path=/nonexistent:", TestLibraryDirectory())}})
          .ok());
  auto stub = StubFor(server);
  const v1::TaskOutcome outcome = RunOne(*stub, "sample.greet", "pool");
  EXPECT_EQ(outcome.result(), absl::StrCat("hello, pool from worker ", outcome.worker()));
  std::map<std::string, v1::FunctionInfo> listed;
  const v1::PoolStatus status = Status(*stub);
  for (const v1::FunctionInfo& function : status.functions()) {
    listed[function.name()] = function;
  }
  ASSERT_TRUE(listed.count("sample.greet")) << "status does not list the library's functions";
  EXPECT_EQ(listed["sample.greet"].description(),
            "Returns 'hello, <input>' and the worker's index.");
  EXPECT_EQ(listed["sample.greet"].request_type(), "");
  EXPECT_EQ(listed["sample.square"].request_type(), "google.protobuf.Int64Value");
  EXPECT_EQ(listed["sample.square"].response_type(), "google.protobuf.Int64Value");
  ExpectCleanExit(server);
}

TEST(PoolOptionsTest, TaskLibraryFunctionsRunTypedAndFailCleanly) {
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 1,
                          .flags = {"--task-lib=libsample_tasks.so",
                                    "--task-lib-path=" + TestLibraryDirectory()}})
                  .ok());
  auto stub = StubFor(server);

  google::protobuf::Int64Value seven;
  seven.set_value(7);
  v1::TaskOutcome outcome = RunOne(*stub, "sample.square", seven.SerializeAsString());
  google::protobuf::Int64Value squared;
  ASSERT_TRUE(squared.ParseFromString(outcome.result())) << outcome.DebugString();
  EXPECT_EQ(squared.value(), 49);

  outcome = RunOne(*stub, "sample.square", "\xff not an Int64Value");
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(outcome.error().message(), HasSubstr("not a valid google.protobuf.Int64Value"));

  // An exception escaping the function fails the task with its type; the worker lives on.
  outcome = RunOne(*stub, "sample.throw", "x");
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(outcome.error().exception_type(), "std::domain_error");
  EXPECT_EQ(outcome.error().message(), "cannot handle 'x'");

  outcome = RunOne(*stub, "sample.reject", "42");
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(outcome.error().message(), "'42' is out of range");
  EXPECT_EQ(outcome.error().exception_type(), "");

  EXPECT_EQ(RunOne(*stub, "sample.greet", "again").result(), "hello, again from worker 0");
  ExpectCleanExit(server);
}

TEST(PoolOptionsTest, ABadTaskLibraryFailsStartupNamingTheLibrary) {
  const std::string directory = TestLibraryDirectory();
  const struct {
    std::vector<std::string> flags;
    std::string message;
  } cases[] = {
      {{"--task-lib=libnope.so", "--task-lib-path=" + directory},
       "task library 'libnope.so' is in none of [" + directory},
      {{"--task-lib=" + directory + "/libno_entry_point.so"},
       "libno_entry_point.so has no mpigate_register_tasks entry point"},
      {{"--task-lib=libsample_tasks.so", "--task-lib", directory + "/libsample_tasks.so",
        "--task-lib-path=" + directory},
       "libsample_tasks.so registers 'sample.greet', a name already taken"},
      {{"--task-lib=" + directory + "/libclashing_tasks.so"},
       "libclashing_tasks.so registers 'echo', a name already taken"},
      {{"--task-lib=" + directory + "/libother_api_version.so"},
       "libother_api_version.so was built against another version of the mpigate task API"},
  };
  for (const auto& [flags, message] : cases) {
    testing::ServerProcess server;
    const absl::Status started = server.Start({.workers = 1, .flags = flags});
    EXPECT_FALSE(started.ok()) << message;
    EXPECT_THAT(std::string(started.message()), HasSubstr(message));
  }
}

v1::TaskOutcome RunExec(v1::Gateway::Stub& stub, const v1::ExecRequest& request) {
  return RunOne(stub, "exec", request.SerializeAsString());
}

TEST(ExecTest, AnAllowedExecRunsProgramsAndKillsThemAtTheirTimeLimit) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--allow-exec"}}).ok());
  auto stub = StubFor(server);

  // A non-zero exit is a result: the program's status and both streams come back.
  v1::ExecRequest request;
  request.add_argv("sh");
  request.add_argv("-c");
  request.add_argv("read line; echo \"out $line $GREETING\"; echo err >&2; exit 3");
  request.set_stdin("fed\n");
  (*request.mutable_env())["GREETING"] = "hi";
  v1::TaskOutcome outcome = RunExec(*stub, request);
  ASSERT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED) << outcome.DebugString();
  v1::ExecResponse response;
  ASSERT_TRUE(response.ParseFromString(outcome.result()));
  EXPECT_EQ(response.exit_code(), 3);
  EXPECT_EQ(response.stdout(), "out fed hi\n");
  EXPECT_EQ(response.stderr(), "err\n");

  // With check, the same exit fails the task and says why.
  request.set_check(true);
  outcome = RunExec(*stub, request);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_THAT(outcome.error().message(), HasSubstr("status 3"));

  // Past its time limit the program is killed and the task fails with DEADLINE_EXCEEDED.
  v1::ExecRequest slow;
  slow.add_argv("sleep");
  slow.add_argv("600");
  slow.set_time_limit_ms(200);
  outcome = RunExec(*stub, slow);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(outcome.error().message(), HasSubstr("sleep"));

  // exec is typed: listed with its messages, and another payload type is refused at submit.
  const v1::PoolStatus status = Status(*stub);
  bool listed = false;
  for (const v1::FunctionInfo& function : status.functions()) {
    if (function.name() != "exec") continue;
    listed = true;
    EXPECT_EQ(function.request_type(), "mpigate.v1.ExecRequest");
    EXPECT_EQ(function.response_type(), "mpigate.v1.ExecResponse");
  }
  EXPECT_TRUE(listed);
  grpc::ClientContext context;
  v1::RunRequest mistyped;
  mistyped.mutable_task()->set_function("exec");
  mistyped.mutable_task()->set_payload_type("google.protobuf.Empty");
  v1::TaskOutcome unused;
  const grpc::Status refused = stub->Run(&context, mistyped, &unused);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("takes mpigate.v1.ExecRequest"));
  ExpectCleanExit(server);
}

TEST(WorldModeTest, RanksOneToNOfTheWorldAreTheWorkers) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .world = true}).ok());
  auto stub = StubFor(server);
  EXPECT_EQ(Status(*stub).workers(), 2u);
  // Each library's launcher gives every rank its rank in a variable of its own.
  const std::vector<v1::TaskOutcome> outcomes = RunBatch(
      *stub, "getenv",
      std::string_view(MPIGATE_MPI_FAMILY) == "openmpi" ? "OMPI_COMM_WORLD_RANK" : "PMI_RANK", 20);
  // The gateway is rank 0; no spawn happened, so the workers are ranks 1 and 2 of its world.
  EXPECT_THAT(ResultsOf(outcomes), UnorderedElementsAre("1", "2"));
  EXPECT_THAT(WorkersOf(outcomes), UnorderedElementsAre(0, 1));
  ExpectCleanExit(server);
}

TEST(WorldModeTest, AWorldWithoutWorkerRanksIsRefused) {
  testing::ServerProcess server;
  const absl::Status started = server.Start({.workers = 0, .world = true});
  EXPECT_FALSE(started.ok());
  EXPECT_THAT(std::string(started.message()), HasSubstr("mpiexec -n N+1"));
}

TEST(ServiceStopTest, StopServiceDrainsTheServiceLikeSigterm) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  auto stub = StubFor(server);
  testing::RawSession session(*stub);
  session.Submit(1, "sleep", "300");
  session.Submit(2, "echo", "queued");
  ASSERT_TRUE(testing::AwaitBusyWorkers(server.target(), 1).ok());

  grpc::ClientContext context;
  v1::StopServiceRequest request;
  request.set_reason("maintenance window");
  v1::StopServiceResponse response;
  ASSERT_TRUE(stub->StopService(&context, request, &response).ok());
  ASSERT_TRUE(session.AwaitPoolState(v1::POOL_STATE_DRAINING));
  session.Submit(3, "echo", "too late");
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_EQ(reply.rejected().rejections_size(), 1);
  EXPECT_EQ(reply.rejected().rejections(0).code(), grpc::StatusCode::UNAVAILABLE);

  EXPECT_TRUE(session.ReadToEnd().ok());
  EXPECT_TRUE(session.closed());
  ASSERT_EQ(session.outcomes().size(), 2u);
  EXPECT_EQ(session.outcomes().at(1).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(session.outcomes().at(2).state(), v1::TASK_STATE_CANCELLED);
  EXPECT_THAT(session.outcomes().at(2).error().message(), HasSubstr("maintenance window"));
  ExpectCleanExit(server, /*signal_number=*/0);
}

TEST(ServiceStopTest, TasksPastTheDrainGraceFailAndTheServiceStillExitsCleanly) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--drain-grace=300ms"}}).ok());
  auto stub = StubFor(server);
  testing::RawSession session(*stub);
  // Both workers stuck far beyond the grace period, and one task queued behind them.
  session.Submit(1, "sleep", "600000");
  session.Submit(2, "sleep", "600000");
  session.Submit(3, "echo", "queued");
  ASSERT_TRUE(testing::AwaitBusyWorkers(server.target(), 2).ok());

  // The client reads on while the service drains, as a real one would.
  grpc::Status session_end;
  std::thread reader([&] { session_end = session.ReadToEnd(); });
  // SIGINT drains as SIGTERM does. Stop() returning means every worker exited and was reaped:
  // none was left running its task.
  ExpectCleanExit(server, SIGINT);
  reader.join();
  EXPECT_TRUE(session_end.ok()) << session_end.error_message();
  EXPECT_TRUE(session.closed());
  ASSERT_EQ(session.outcomes().size(), 3u);
  for (const uint64_t id : {1, 2}) {
    const v1::TaskOutcome& outcome = session.outcomes().at(id);
    EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
    EXPECT_EQ(outcome.error().code(), grpc::StatusCode::CANCELLED);
    EXPECT_THAT(outcome.error().message(), HasSubstr("drain grace period"));
  }
  EXPECT_EQ(session.outcomes().at(3).state(), v1::TASK_STATE_CANCELLED);
}

}  // namespace
}  // namespace mpigate
