// End-to-end tests of tasks' environments on a real mpigate-server: what one client's task sets
// with setenv() is gone for the next task, of any client, on the same worker (one worker, so that
// every task runs in the same task runner); an executor's own variables (ExecutorOptions::env)
// reach its tasks and no others; malformed variables, and variables on a pool with
// --isolation=none, are refused when the session opens.
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<Executor>> Connect(const testing::ServerProcess& server,
                                                  const std::string& name,
                                                  std::map<std::string, std::string> env = {}) {
  return Executor::Connect(
      {.endpoint = server.target(), .client_name = name, .env = std::move(env)});
}

TEST(TaskEnvTest, ATaskSetenvIsGoneForTheNextTaskAndExecutorsGetTheirOwnVariables) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> a = Connect(server, "a");
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<std::unique_ptr<Executor>> b = Connect(server, "b");
  ASSERT_TRUE(b.ok()) << b.status();
  absl::StatusOr<std::unique_ptr<Executor>> with_x =
      Connect(server, "with X", {{"MPIGATE_X", "1"}});
  ASSERT_TRUE(with_x.ok()) << with_x.status();

  // Client A's task sets a variable; neither B's next task nor A's own sees it.
  ASSERT_TRUE((*a)->Submit("setenv", "MPIGATE_LEAK=from a").Result().ok());
  EXPECT_EQ((*b)->Submit("getenv", "MPIGATE_LEAK").Exception().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*a)->Submit("setenv", "MPIGATE_LEAK=again").Result().ok());
  EXPECT_EQ((*a)->Submit("getenv", "MPIGATE_LEAK").Exception().code(), absl::StatusCode::kNotFound);
  // A task that changes the pool's own variables does not change them for the next.
  const absl::StatusOr<std::string> path = (*b)->Submit("getenv", "PATH").Result();
  ASSERT_TRUE(path.ok()) << path.status();
  ASSERT_TRUE((*a)->Submit("setenv", "PATH=/nowhere").Result().ok());
  EXPECT_EQ((*b)->Submit("getenv", "PATH").Result().value_or(""), *path);

  // An executor's variables, interleaved with another's tasks on the one worker.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*with_x)->Submit("getenv", "MPIGATE_X").Result().value_or(""), "1");
    EXPECT_EQ((*b)->Submit("getenv", "MPIGATE_X").Exception().code(), absl::StatusCode::kNotFound);
    // Its own task may change them; its next task has them back.
    ASSERT_TRUE((*with_x)->Submit("setenv", "MPIGATE_X=2").Result().ok());
  }
  EXPECT_EQ((*with_x)->Submit("getenv", "PATH").Result().value_or(""), *path);

  absl::StatusOr<std::unique_ptr<Executor>> malformed = Connect(server, "bad", {{"A=B", "1"}});
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kInvalidArgument) << malformed.status();
  EXPECT_THAT(malformed.status().message(), HasSubstr("not an environment variable name"));
  for (auto* executor : {&*a, &*b, &*with_x}) (*executor)->Shutdown();
  ASSERT_TRUE(server.Stop().ok());
}

TEST(TaskEnvTest, APoolWithoutTaskRunnersRefusesExecutorVariables) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--isolation=none"}}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> refused = Connect(server, "env", {{"MPIGATE_X", "1"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("--isolation=none"));
  absl::StatusOr<std::unique_ptr<Executor>> plain = Connect(server, "plain");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Submit("echo", "in").Result().value_or(""), "in");
  (*plain)->Shutdown();
  ASSERT_TRUE(server.Stop().ok());
}

}  // namespace
}  // namespace mpigate
