// End-to-end tests of the service's limits on sessions and on each session's queue, against a
// real mpigate-server: a client past a limit gets RESOURCE_EXHAUSTED with a message that names
// the limit, and every other client goes on as before. (The message size limit, --max_message_mb,
// is tested in e2e_test.)
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<Executor>> Connect(const testing::ServerProcess& server,
                                                  const std::string& name) {
  return Executor::Connect({.endpoint = server.target(), .client_name = name});
}

TEST(LimitsTest, AClientPastTheSessionLimitIsRefusedAndTheOthersGoOn) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--max_sessions=2"}}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> first = Connect(server, "first");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<Executor>> second = Connect(server, "second");
  ASSERT_TRUE(second.ok()) << second.status();

  absl::StatusOr<std::unique_ptr<Executor>> third = Connect(server, "third");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_THAT(third.status().message(),
              AllOf(HasSubstr("maximum of 2 open sessions"), HasSubstr("--max_sessions")));

  EXPECT_EQ(*(*first)->Submit("echo", "still").Result(), "still");
  EXPECT_EQ(*(*second)->Submit("echo", "here").Result(), "here");
  // Once a session has closed there is room again.
  (*first)->Shutdown();
  first->reset();
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
                return status.sessions() == 1;
              }).ok());
  absl::StatusOr<std::unique_ptr<Executor>> later = Connect(server, "later");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(*(*later)->Submit("echo", "in").Result(), "in");
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LimitsTest, TasksPastASessionsQueueLimitFailAloneAndTheQueueTakesMoreAsItDrains) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server
          .Start({.workers = 2,
                  .flags = {"--max_queued_tasks_per_session=3", "--max_tasks_per_worker=1"}})
          .ok());
  absl::StatusOr<std::unique_ptr<Executor>> limited = Connect(server, "limited");
  ASSERT_TRUE(limited.ok()) << limited.status();
  absl::StatusOr<std::unique_ptr<Executor>> other = Connect(server, "other");
  ASSERT_TRUE(other.ok()) << other.status();

  // Both workers busy: what the session submits next stays queued.
  std::vector<Future> sleepers;
  for (int i = 0; i < 2; ++i) sleepers.push_back((*limited)->Submit("sleep", "60000"));
  for (const Future& sleeper : sleepers) ASSERT_TRUE(sleeper.WaitStarted());
  std::vector<Future> queued;
  for (int i = 0; i < 5; ++i) queued.push_back((*limited)->Submit("echo", absl::StrCat(i)));
  // The last two found the queue full.
  for (int i = 3; i < 5; ++i) {
    const absl::Status refused = queued[i].Exception();
    EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
    EXPECT_THAT(refused.message(), AllOf(HasSubstr("maximum of 3 queued tasks"),
                                         HasSubstr("--max_queued_tasks_per_session")));
  }
  // Another session's queue is its own.
  std::vector<Future> others;
  for (int i = 0; i < 3; ++i) others.push_back((*other)->Submit("echo", absl::StrCat("o", i)));

  for (Future& sleeper : sleepers) EXPECT_TRUE(sleeper.Interrupt());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*queued[i].Result(), absl::StrCat(i));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*others[i].Result(), absl::StrCat("o", i));
  // With the queue drained the session takes tasks again.
  EXPECT_EQ(*(*limited)->Submit("echo", "again").Result(), "again");
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LimitsTest, NegativeLimitsAreAUsageError) {
  for (const char* flag : {"--max_sessions=-1", "--max_queued_tasks_per_session=-1"}) {
    testing::ServerProcess server;
    const absl::Status started = server.Start({.workers = 1, .flags = {flag}});
    ASSERT_FALSE(started.ok()) << flag;
    EXPECT_THAT(std::string(started.message()), HasSubstr("must not be negative")) << flag;
  }
}

}  // namespace
}  // namespace mpigate
