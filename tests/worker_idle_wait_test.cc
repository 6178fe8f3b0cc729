// A worker whose gateway rings its doorbell, between tasks, waits for the next ring: after a task
// and its hot polls it blocks on its doorbell at once instead of backing off in growing sleeps
// first (issue 25: those woke the worker about ten times in each pause between tasks). Counted as
// the worker process's voluntary context switches (each a wait that ended) over round trips
// separated by pauses, which do not depend on the machine's speed: a few per task (the ring, the
// task runner's answer), none for the pause itself.
//
// And the gateway, past its hot polls, sleeps between polls: a worker that a ring woke from its
// idle wait, or whose task ran long, rings the gateway's bell back with its result, so that the
// gateway takes it at once instead of when its sleep ends (server/gateway_bell.h). Counted as the
// wakes of the gateway's bell thread, which only a ring back wakes.
#include <dirent.h>
#include <sys/types.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gtest/gtest.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

constexpr absl::Duration kPatience = absl::Seconds(60);

// The voluntary context switches so far of every live thread of `pid`, or of those named `thread`.
uint64_t VoluntarySwitches(pid_t pid, absl::string_view thread = "") {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  std::vector<std::string> threads;
  if (DIR* directory = opendir(tasks.c_str())) {
    while (const dirent* entry = readdir(directory)) {
      if (entry->d_name[0] != '.') threads.emplace_back(entry->d_name);
    }
    closedir(directory);
  }
  uint64_t total = 0;
  for (const std::string& tid : threads) {
    std::string name;
    std::getline(std::ifstream(absl::StrCat(tasks, "/", tid, "/comm")), name);
    if (!thread.empty() && name != thread) continue;
    std::ifstream status(absl::StrCat(tasks, "/", tid, "/status"));
    std::string line;
    while (std::getline(status, line)) {
      constexpr absl::string_view kField = "voluntary_ctxt_switches:";
      if (!absl::StartsWith(line, kField)) continue;
      uint64_t count = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(kField.size())), &count)) {
        total += count;
      }
    }
  }
  return total;
}

// The gateway's bell thread (server/gateway_bell.cc names it).
constexpr absl::string_view kBellThread = "mpigate-bell";

// A pool of one worker of the isolation the test is given, and a client of it.
class WorkerIdleWaitTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    ASSERT_EQ(server_.Start({.workers = 1, .flags = {absl::StrCat("--isolation=", GetParam())}}),
              absl::OkStatus());
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server_.target()});
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
  }

  // Whether the gateway's bell thread, which only a worker's ring back wakes, has woken at least
  // `at_least` times since it had woken `before` times, within kPatience.
  ::testing::AssertionResult BellWoke(uint64_t before, uint64_t at_least) {
    const absl::Time deadline = absl::Now() + kPatience;
    uint64_t wakes = 0;
    while ((wakes = VoluntarySwitches(server_.pid(), kBellThread) - before) < at_least) {
      if (absl::Now() > deadline) {
        return ::testing::AssertionFailure() << "the gateway's bell woke " << wakes << " times";
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return ::testing::AssertionSuccess();
  }

  testing::ServerProcess server_;
  std::unique_ptr<Executor> executor_;
};

TEST_P(WorkerIdleWaitTest, BetweenTasksTheWorkerWaitsOnItsDoorbell) {
  // The gateway has rung the worker by now (it rings each new worker once, and after each task
  // it sends), and the task runner is up.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(executor_->Submit("echo", "warm").Result(kPatience).ok());
  }
  const std::vector<pid_t> workers = server_.WorkerPids();
  ASSERT_EQ(workers.size(), 1u);

  constexpr int kTasks = 20;
  const uint64_t before = VoluntarySwitches(workers[0]);
  for (int i = 0; i < kTasks; ++i) {
    const absl::StatusOr<std::string> result =
        executor_->Submit("echo", absl::StrCat("task ", i)).Result(kPatience);
    ASSERT_EQ(result.value_or(result.status().ToString()), absl::StrCat("task ", i));
    // A pause between tasks, the workload under test (not a wait for anything): a worker that
    // polls wakes some ten times in it, one that waits on its doorbell not at all.
    absl::SleepFor(absl::Milliseconds(20));
  }
  const uint64_t after = VoluntarySwitches(workers[0]);
  // The ring that brings the task, the runner's answer (or the task thread's end), and the odd
  // wake-up of Open MPI's own threads: 1-2 per task here, against 6-7.5 for a worker that backs
  // off in short sleeps after each task.
  constexpr uint64_t kMostPerTask = 4;
  EXPECT_LE(after - before, kMostPerTask * kTasks)
      << (after - before) << " waits ended in the worker over " << kTasks << " tasks";
}

// Each of these tasks reaches a worker that a ring must wake from its idle wait.
TEST_P(WorkerIdleWaitTest, AWorkerWokenFromItsIdleWaitRingsTheGatewayBack) {
  ASSERT_TRUE(executor_->Submit("echo", "warm").Result(kPatience).ok());
  constexpr int kTasks = 10;
  const uint64_t before = VoluntarySwitches(server_.pid(), kBellThread);
  for (int i = 0; i < kTasks; ++i) {
    // A pause between tasks, the workload under test (not a wait for anything): the worker's hot
    // polls end within a millisecond or so, and it waits on its doorbell.
    absl::SleepFor(absl::Milliseconds(20));
    const absl::StatusOr<std::string> result =
        executor_->Submit("echo", absl::StrCat("task ", i)).Result(kPatience);
    ASSERT_EQ(result.value_or(result.status().ToString()), absl::StrCat("task ", i));
  }
  // One ring back per task; two that come before the bell's thread waits again wake it once.
  EXPECT_TRUE(BellWoke(before, kTasks / 2));
}

// Tasks that run longer than the gateway polls hot, one after the other, with no idle spell.
TEST_P(WorkerIdleWaitTest, AWorkerRingsTheGatewayBackAfterALongTask) {
  ASSERT_TRUE(executor_->Submit("echo", "warm").Result(kPatience).ok());
  constexpr int kTasks = 10;
  const uint64_t before = VoluntarySwitches(server_.pid(), kBellThread);
  for (int i = 0; i < kTasks; ++i) {
    // Busy for 5 ms after the worker heard it: past the gateway's hot polls on any machine.
    ASSERT_TRUE(executor_->Submit("spin", "5").Result(kPatience).ok());
  }
  EXPECT_TRUE(BellWoke(before, kTasks / 2));
}

INSTANTIATE_TEST_SUITE_P(Isolations, WorkerIdleWaitTest, ::testing::Values("process", "none"));

}  // namespace
}  // namespace mpigate
