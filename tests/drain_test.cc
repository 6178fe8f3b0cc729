// End-to-end test of a drain under load: SIGTERM while several clients have thousands of tasks
// queued and running. Every accepted task must end once, with its result or a clear error, and
// the service must exit cleanly with no process left behind.
#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

constexpr int kClients = 4;
constexpr int kTasksPerClient = 500;
// Tasks that have finished before the signal: the load is well under way.
constexpr int kDoneBeforeSignal = 300;

struct Submitted {
  Future future;
  // What an echo returns; empty for a sleep (which returns nothing).
  std::string expected;
};

TEST(DrainTest, SigtermUnderLoadEndsEveryTaskOnceWithItsResultOrAClearError) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--drain_grace=2s"}}).ok());

  std::vector<std::unique_ptr<Executor>> clients;
  for (int c = 0; c < kClients; ++c) {
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
        {.endpoint = server.target(), .client_name = absl::StrCat("load ", c)});
    ASSERT_TRUE(executor.ok()) << executor.status();
    clients.push_back(*std::move(executor));
  }
  // Holds a worker through the whole drain and never looks at its cancellation flag: it must be
  // failed when the grace period ends, not waited for.
  Future stuck = clients[0]->Submit("spin", "60000");
  ASSERT_TRUE(stuck.WaitStarted());

  std::atomic<int> done{0};
  absl::Notification under_way;
  std::vector<std::vector<Submitted>> submitted(kClients);
  std::vector<std::thread> submitters;
  for (int c = 0; c < kClients; ++c) {
    submitters.emplace_back([&, c] {
      for (int i = 0; i < kTasksPerClient; ++i) {
        const bool echo = i % 2 == 0;
        std::string expected = echo ? absl::StrCat("client ", c, " task ", i) : std::string();
        Future future = echo ? clients[c]->Submit("echo", expected)
                             : clients[c]->Submit("sleep", "2");
        future.AddDoneCallback([&](const Future&) {
          if (done.fetch_add(1) + 1 == kDoneBeforeSignal) under_way.Notify();
        });
        submitted[c].push_back(Submitted{std::move(future), std::move(expected)});
      }
    });
  }
  for (std::thread& submitter : submitters) submitter.join();
  under_way.WaitForNotification();
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);

  int succeeded = 0;
  int cancelled = 0;
  for (int c = 0; c < kClients; ++c) {
    for (const Submitted& task : submitted[c]) {
      ASSERT_TRUE(task.future.Wait());
      absl::StatusOr<std::string> result = task.future.Result();
      if (result.ok()) {
        ++succeeded;
        EXPECT_EQ(*result, task.expected);
        continue;
      }
      // Queued tasks are cancelled by the drain; nothing may be lost with the connection.
      ++cancelled;
      EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
      EXPECT_THAT(result.status().message(), HasSubstr("draining"));
    }
  }
  EXPECT_GE(succeeded, kDoneBeforeSignal);
  EXPECT_GT(cancelled, 0) << "the signal came after every task had run: no load was drained";
  EXPECT_EQ(succeeded + cancelled, kClients * kTasksPerClient);

  absl::StatusOr<std::string> stuck_result = stuck.Result();
  ASSERT_FALSE(stuck_result.ok());
  EXPECT_EQ(stuck_result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(stuck_result.status().message(), HasSubstr("drain grace period"));

  clients.clear();
  absl::StatusOr<testing::ServerExit> exit = server.Stop(/*signal_number=*/0);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_THAT(exit->stderr_text, HasSubstr("stopped cleanly"));
}

}  // namespace
}  // namespace mpigate
