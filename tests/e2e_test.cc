// End-to-end tests: a real mpigate-server with 2 spawned MPI workers on a real Unix socket,
// driven by the C++ client library and by raw gRPC stubs (as other languages would use it).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// The suite's server refuses messages over 4 MiB, to test the limit without huge payloads.
constexpr int kServerMaxMessageMb = 4;

// The suite's sessions end with their streams (no grace period to resume them in), so that a
// client that vanishes frees what it held at once; tests/reconnect_test.cc covers resuming.
class EndToEndTest : public testing::SharedServerTest<EndToEndTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {
        .workers = 2,
        .flags = {absl::StrCat("--max-message-mb=", kServerMaxMessageMb), "--resume-grace-s=0"}};
  }
  static constexpr char kClientName[] = "e2e_test";

 protected:
  static std::unique_ptr<v1::Gateway::Stub> Stub() {
    grpc::ChannelArguments arguments;
    arguments.SetMaxSendMessageSize(64 << 20);
    return v1::Gateway::NewStub(grpc::CreateCustomChannel(
        server_->target(), grpc::InsecureChannelCredentials(), arguments));
  }

  static v1::RunRequest RunRequestFor(const std::string& function, const std::string& payload) {
    v1::RunRequest request;
    request.mutable_task()->set_task_id(7);
    request.mutable_task()->set_function(function);
    request.mutable_task()->set_payload(payload);
    return request;
  }
};

TEST_F(EndToEndTest, EchoReturnsTheExactBytes) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  EXPECT_EQ(executor->workers(), 2);
  const std::string payload("binary\0payload\xff", 15);
  absl::StatusOr<std::string> result = executor->Submit("echo", payload).Result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, payload);
}

TEST_F(EndToEndTest, ManyThreadsShareOneExecutor) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  constexpr int kThreads = 8;
  constexpr int kTasksPerThread = 250;
  std::vector<std::vector<Future>> futures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasksPerThread; ++i) {
        futures[t].push_back(executor->Submit("echo", absl::StrCat(t, "/", i)));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kTasksPerThread; ++i) {
      absl::StatusOr<std::string> result = futures[t][i].Result();
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(*result, absl::StrCat(t, "/", i));
    }
  }
}

TEST_F(EndToEndTest, TaskErrorCarriesCodeAndMessage) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  absl::StatusOr<std::string> result = executor->Submit("fail", "disk on fire").Result();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(result.status().message(), HasSubstr("disk on fire"));

  result = executor->Submit("sleep", "not a number").Result();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EndToEndTest, UnknownFunctionIsNotFound) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  absl::StatusOr<std::string> result = executor->Submit("no_such_function", "x").Result();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(result.status().message(), HasSubstr("no_such_function"));
  // The session goes on working after a rejection.
  EXPECT_EQ(executor->Submit("echo", "still here").Result().value_or(""), "still here");
}

TEST_F(EndToEndTest, ResultTimeoutIsReportedAndTheTaskGoesOn) {
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  Future future = executor->Submit("sleep", "300");
  absl::StatusOr<std::string> early = future.Result(absl::Milliseconds(1));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(future.Result().ok());
  EXPECT_TRUE(future.Done());
}

TEST_F(EndToEndTest, TasksSpreadOverBothWorkers) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  // Two concurrent Run calls of a task that holds its worker: each must get its own worker.
  std::set<int> workers;
  std::vector<std::thread> threads;
  absl::Mutex mu;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      grpc::ClientContext context;
      v1::TaskOutcome outcome;
      const grpc::Status status = stub->Run(&context, RunRequestFor("sleep", "400"), &outcome);
      absl::MutexLock lock(&mu);
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
      workers.insert(outcome.worker());
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(workers, (std::set<int>{0, 1}));
}

TEST_F(EndToEndTest, RunReturnsTheOutcome) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext context;
  v1::TaskOutcome outcome;
  grpc::Status status = stub->Run(&context, RunRequestFor("echo", "hi"), &outcome);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(outcome.task_id(), 7u);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), "hi");

  grpc::ClientContext failing_context;
  status = stub->Run(&failing_context, RunRequestFor("fail", "boom"), &outcome);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(outcome.error().code(), static_cast<int>(grpc::StatusCode::UNKNOWN));
  EXPECT_EQ(outcome.error().message(), "boom");
}

TEST_F(EndToEndTest, RunRejectsBadTasksWithTheRightCode) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  v1::TaskOutcome outcome;
  grpc::ClientContext unknown_context;
  EXPECT_EQ(stub->Run(&unknown_context, RunRequestFor("nope", ""), &outcome).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext empty_context;
  EXPECT_EQ(stub->Run(&empty_context, RunRequestFor("", ""), &outcome).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(EndToEndTest, OversizedRequestIsResourceExhausted) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext context;
  v1::TaskOutcome outcome;
  const std::string payload(static_cast<size_t>(kServerMaxMessageMb + 1) << 20, 'x');
  const grpc::Status status = stub->Run(&context, RunRequestFor("echo", payload), &outcome);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  // The server is unharmed.
  grpc::ClientContext next_context;
  EXPECT_TRUE(stub->Run(&next_context, RunRequestFor("echo", "ok"), &outcome).ok());
}

TEST_F(EndToEndTest, ATaskAboveTheServiceMessageLimitFailsAloneAndTheSessionGoesOn) {
  // The client accepts far more than the service does: the service's limit is the one that bites.
  // Payloads go in the messages, as from a client on another host (through shared memory the
  // limit does not apply: tests/shared_payload_test.cc).
  absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
      {.endpoint = server_->target(), .client_name = kClientName, .shared_memory_min_bytes = 0});
  ASSERT_TRUE(executor.ok()) << executor.status();
  Future small = (*executor)->Submit("echo", "before");
  Future oversized = (*executor)->Submit(
      "echo", std::string(static_cast<size_t>(kServerMaxMessageMb + 1) << 20, 'x'));
  Future after = (*executor)->Submit("echo", "after");
  EXPECT_EQ(oversized.Result().status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(oversized.Result().status().message(), HasSubstr("--max_message_mb"));
  EXPECT_EQ(small.Result().value_or(""), "before");
  EXPECT_EQ(after.Result().value_or(""), "after");
}

TEST_F(EndToEndTest, AnOutcomeAboveTheClientMessageLimitFailsAloneAndTheSessionGoesOn) {
  // A client that says it takes messages of up to 4 KiB, which its channel would refuse past.
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(4096);
  std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(
      grpc::CreateCustomChannel(server_->target(), grpc::InsecureChannelCredentials(), arguments));
  v1::OpenSession open;
  open.set_client_name("small messages");
  open.set_max_message_bytes(4096);
  testing::RawSession session(*stub, open, absl::Minutes(1));
  EXPECT_EQ(session.opened().max_message_bytes(), static_cast<uint64_t>(kServerMaxMessageMb) << 20);
  session.Submit(1, "echo", std::string(3000, 'x'));
  session.Submit(2, "echo", std::string(5000, 'x'));
  session.Submit(3, "echo", "after");
  ASSERT_TRUE(session.AwaitOutcomes(3));
  EXPECT_EQ(session.outcomes().at(1).result().size(), 3000u);
  const v1::TaskOutcome& refused = session.outcomes().at(2);
  EXPECT_EQ(refused.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(refused.error().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  // The worker refuses it before it leaves (the task carries its session's limit), in words that
  // name the limit.
  EXPECT_THAT(refused.error().message(),
              AllOf(HasSubstr("larger than 4032 bytes"), HasSubstr("max_message_bytes")));
  EXPECT_EQ(session.outcomes().at(3).result(), "after");
}

TEST_F(EndToEndTest, MalformedRequestBytesAreRejectedAndTheServerGoesOn) {
  auto channel = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  // A truncated length-delimited field: not a valid RunRequest.
  const char garbage[] = {0x0a, 0x7f, 0x01};
  grpc::Slice slice(garbage, sizeof(garbage));
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&context, "/mpigate.v1.Gateway/Run", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
  done.WaitForNotification();
  // The service parses unary requests itself (gRPC 1.51's typed callback API said UNIMPLEMENTED).
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(status.error_message(), "the request does not parse as mpigate.v1.RunRequest");

  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext next_context;
  v1::TaskOutcome outcome;
  EXPECT_TRUE(stub->Run(&next_context, RunRequestFor("echo", "ok"), &outcome).ok());
}

TEST_F(EndToEndTest, SessionMustStartWithOpen) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext context;
  auto stream = stub->Session(&context);
  v1::SessionRequest request;
  request.mutable_submit()->add_tasks()->set_function("echo");
  ASSERT_TRUE(stream->Write(request));
  v1::SessionEvent event;
  EXPECT_FALSE(stream->Read(&event));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("open"));
}

TEST_F(EndToEndTest, RawSessionRejectsDuplicateIdsAndCancelsQueuedTasks) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  testing::RawSession session(*stub);
  // Two long tasks hold both workers; task 3 waits in the queue behind them.
  v1::SessionRequest batch;
  for (uint64_t id : {1, 2}) {
    v1::TaskSpec& task = *batch.mutable_submit()->add_tasks();
    task.set_task_id(id);
    task.set_function("sleep");
    task.set_payload("1500");
  }
  v1::TaskSpec& queued = *batch.mutable_submit()->add_tasks();
  queued.set_task_id(3);
  queued.set_function("echo");
  v1::TaskSpec& duplicate = *batch.mutable_submit()->add_tasks();
  duplicate.set_task_id(3);
  duplicate.set_function("echo");
  session.Send(batch);

  v1::SessionEvent rejected = session.NextReply();
  ASSERT_TRUE(rejected.has_rejected());
  ASSERT_EQ(rejected.rejected().rejections_size(), 1);
  EXPECT_EQ(rejected.rejected().rejections(0).task_id(), 3u);
  EXPECT_EQ(rejected.rejected().rejections(0).code(),
            static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));

  // Task 1 must have started for its cancel to be refused.
  ASSERT_TRUE(testing::AwaitBusyWorkers(server_->target(), 2).ok());
  v1::SessionRequest cancel;
  cancel.mutable_cancel()->add_task_ids(3);
  cancel.mutable_cancel()->add_task_ids(1);
  session.Send(cancel);
  v1::SessionEvent cancelled = session.NextReply();
  ASSERT_TRUE(cancelled.has_cancel_results());
  ASSERT_EQ(cancelled.cancel_results().results_size(), 2);
  EXPECT_TRUE(cancelled.cancel_results().results(0).cancelled());   // queued
  EXPECT_FALSE(cancelled.cancel_results().results(1).cancelled());  // running

  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  const grpc::Status status = session.ReadToEnd();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(session.closed());
  EXPECT_EQ(session.duplicate_outcomes(), 0);
  ASSERT_EQ(session.outcomes().size(), 3u);
  EXPECT_EQ(session.outcomes().at(1).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(session.outcomes().at(2).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(session.outcomes().at(3).state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(session.outcomes().at(3).error().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
}

TEST_F(EndToEndTest, ChunkRunsEveryItem) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  testing::RawSession session(*stub);
  v1::SessionRequest request;
  v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
  task.set_task_id(1);
  task.set_function("sleep");
  task.add_items("0");
  task.add_items("bad");
  task.add_items("1");
  session.Send(request);
  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  ASSERT_TRUE(session.ReadToEnd().ok());
  const v1::TaskOutcome& outcome = session.outcomes().at(1);
  ASSERT_EQ(outcome.items_size(), 3);
  EXPECT_TRUE(outcome.items(0).has_result());
  EXPECT_EQ(outcome.items(1).error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_TRUE(outcome.items(2).has_result());
}

TEST_F(EndToEndTest, PoolStatusListsWorkersAndFunctions) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext context;
  v1::PoolStatus status;
  ASSERT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  EXPECT_EQ(status.workers(), 2u);
  EXPECT_FALSE(status.draining());
  std::vector<std::string> names;
  for (const v1::FunctionInfo& function : status.functions()) {
    names.push_back(function.name());
    EXPECT_FALSE(function.description().empty());
  }
  EXPECT_THAT(names, ::testing::IsSupersetOf({"echo", "fail", "sleep", "spin"}));
}

TEST_F(EndToEndTest, AClientThatVanishesLeavesThePoolServing) {
  {
    std::unique_ptr<v1::Gateway::Stub> stub = Stub();
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    v1::SessionRequest open;
    open.mutable_open();
    ASSERT_TRUE(stream->Write(open));
    v1::SessionRequest request;
    for (uint64_t id = 1; id <= 50; ++id) {
      v1::TaskSpec& task = *request.mutable_submit()->add_tasks();
      task.set_task_id(id);
      task.set_function("sleep");
      task.set_payload("20");
    }
    ASSERT_TRUE(stream->Write(request));
    context.TryCancel();
  }
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  EXPECT_EQ(executor->Submit("echo", "after").Result().value_or(""), "after");
}

TEST_F(EndToEndTest, ListFunctionsDescribesWhatStatusLists) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  grpc::ClientContext list_context;
  v1::ListFunctionsResponse listed;
  ASSERT_TRUE(stub->ListFunctions(&list_context, v1::ListFunctionsRequest(), &listed).ok());
  grpc::ClientContext status_context;
  v1::PoolStatus status;
  ASSERT_TRUE(stub->GetPoolStatus(&status_context, v1::GetPoolStatusRequest(), &status).ok());
  ASSERT_EQ(listed.functions_size(), status.functions_size());
  for (int i = 0; i < listed.functions_size(); ++i) {
    const v1::FunctionInfo& function = listed.functions(i);
    EXPECT_EQ(function.name(), status.functions(i).name());
    EXPECT_FALSE(function.description().empty()) << function.name();
    // The built-ins of this server are functions of bytes; exec is not enabled.
    EXPECT_EQ(function.request_type(), "") << function.name();
    EXPECT_NE(function.name(), "exec");
  }
}

TEST_F(EndToEndTest, ExecIsRefusedUnlessTheServiceAllowsIt) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  testing::RawSession session(*stub);
  session.Submit(1, "exec", "");
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_TRUE(reply.has_rejected()) << reply.DebugString();
  ASSERT_EQ(reply.rejected().rejections_size(), 1);
  EXPECT_EQ(reply.rejected().rejections(0).code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(reply.rejected().rejections(0).message(), HasSubstr("--allow-exec"));
}

TEST_F(EndToEndTest, ARunningTaskReportsProgressBeforeItsOutcome) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  testing::RawSession session(*stub);
  session.Submit(1, "sleep", "400");
  const std::optional<v1::TaskProgress> progress = session.AwaitProgress(1);
  ASSERT_TRUE(progress.has_value()) << "the task ended without reporting progress";
  EXPECT_GE(progress->fraction(), 0.0);
  EXPECT_LE(progress->fraction(), 1.0);
  EXPECT_THAT(progress->message(), HasSubstr("of 400 ms"));
  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  ASSERT_TRUE(session.ReadToEnd().ok());
  EXPECT_EQ(session.outcomes().at(1).state(), v1::TASK_STATE_SUCCEEDED);
}

TEST_F(EndToEndTest, InterruptStopsARunningTaskThatPollsItsFlag) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub();
  testing::RawSession session(*stub);
  session.Submit(1, "sleep", "600000");  // Ten minutes: it ends only if interrupted.
  // Its first progress report: it runs (a task handed to a worker may still wait in its backlog,
  // where an interrupt drops it instead).
  ASSERT_TRUE(session.AwaitProgress(1).has_value());
  v1::SessionRequest cancel;
  cancel.mutable_cancel()->add_task_ids(1);
  cancel.mutable_cancel()->set_interrupt_running(true);
  session.Send(cancel);
  const v1::SessionEvent reply = session.NextReply();
  ASSERT_TRUE(reply.has_cancel_results()) << reply.DebugString();
  ASSERT_EQ(reply.cancel_results().results_size(), 1);
  EXPECT_FALSE(reply.cancel_results().results(0).cancelled()) << "it was running";
  EXPECT_TRUE(reply.cancel_results().results(0).interrupted());

  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  session.Send(shutdown);
  ASSERT_TRUE(session.ReadToEnd().ok());
  const v1::TaskOutcome& outcome = session.outcomes().at(1);
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(outcome.error().code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(outcome.error().message(), HasSubstr("sleep interrupted after"));
}

TEST_F(EndToEndTest, AClientThatVanishesFreesTheWorkersItsTasksHeld) {
  {
    // Both workers take ten-minute sleeps for a client that then goes away.
    std::unique_ptr<v1::Gateway::Stub> stub = Stub();
    testing::RawSession session(*stub);
    session.Submit(1, "sleep", "600000");
    session.Submit(2, "sleep", "600000");
    ASSERT_TRUE(session.AwaitStarted(1));
    ASSERT_TRUE(session.AwaitStarted(2));
  }
  // Its tasks are interrupted, so the workers are free again long before ten minutes.
  std::unique_ptr<Executor> executor = Connect();
  ASSERT_NE(executor, nullptr);
  EXPECT_EQ(executor->Submit("echo", "after").Result().value_or(""), "after");
}

}  // namespace
}  // namespace mpigate
