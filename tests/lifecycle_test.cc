// End-to-end tests of the service's life: start as an MPI singleton or under mpiexec, serve,
// drain on SIGTERM, and leave no process or file behind.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  return content;
}

v1::TaskOutcome RunEcho(const std::string& target, const std::string& payload) {
  auto stub = v1::Gateway::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::RunRequest request;
  request.mutable_task()->set_function("echo");
  request.mutable_task()->set_payload(payload);
  v1::TaskOutcome outcome;
  const grpc::Status status = stub->Run(&context, request, &outcome);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return outcome;
}

void ExpectCleanLifecycle(bool under_mpiexec) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .under_mpiexec = under_mpiexec}).ok());
  EXPECT_EQ(ReadFile(server.endpoint_file()), server.target());
  EXPECT_EQ(RunEcho(server.target(), "alive").result(), "alive");

  const std::string socket_path = server.target().substr(5);
  const std::string endpoint_file = server.endpoint_file();
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text, HasSubstr("stopped cleanly"));
  // Stop() returned, so every descendant (MPI daemon, workers) has exited and been reaped.
  EXPECT_NE(access(socket_path.c_str(), F_OK), 0) << "socket left behind";
  EXPECT_NE(access(endpoint_file.c_str(), F_OK), 0) << "endpoint file left behind";
}

TEST(LifecycleTest, SingletonStartsServesAndStopsCleanly) { ExpectCleanLifecycle(false); }

TEST(LifecycleTest, MpiexecStartsServesAndStopsCleanly) { ExpectCleanLifecycle(true); }

TEST(LifecycleTest, SigtermLetsRunningTasksFinishAndCancelsQueuedOnes) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  testing::RawSession session(*stub);

  // Tasks 1 and 2 hold both workers; 3..5 wait in the queue.
  v1::SessionRequest submit;
  for (uint64_t id = 1; id <= 5; ++id) {
    v1::TaskSpec& task = *submit.mutable_submit()->add_tasks();
    task.set_task_id(id);
    task.set_function(id <= 2 ? "sleep" : "echo");
    task.set_payload(id <= 2 ? "800" : "queued");
  }
  session.Send(submit);
  // Both long tasks must be on their workers before the signal, or they would be cancelled too.
  ASSERT_TRUE(testing::AwaitBusyWorkers(server.target(), 2).ok());

  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  EXPECT_TRUE(session.ReadToEnd().ok());
  EXPECT_TRUE(session.closed());
  EXPECT_EQ(session.duplicate_outcomes(), 0);
  std::map<uint64_t, v1::TaskOutcome> outcomes = session.outcomes();
  ASSERT_EQ(outcomes.size(), 5u);
  for (uint64_t id = 1; id <= 2; ++id) {
    EXPECT_EQ(outcomes[id].state(), v1::TASK_STATE_SUCCEEDED) << "task " << id;
  }
  for (uint64_t id = 3; id <= 5; ++id) {
    EXPECT_EQ(outcomes[id].state(), v1::TASK_STATE_CANCELLED) << "task " << id;
    EXPECT_THAT(outcomes[id].error().message(), HasSubstr("draining"));
  }

  absl::StatusOr<testing::ServerExit> exit = server.Stop(/*signal_number=*/0);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

TEST(LifecycleTest, AWorkerThatCannotStartFailsStartupWithAClearError) {
  testing::ServerProcess server;
  const absl::Status started =
      server.Start({.workers = 2, .flags = {"--worker-binary=/nonexistent/mpigate-worker"}});
  EXPECT_EQ(started.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(started.message()), HasSubstr("/nonexistent/mpigate-worker"));
}

}  // namespace
}  // namespace mpigate
