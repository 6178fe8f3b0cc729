// InterruptWatcher: a signal runs the stop action once, on another thread; an action given after
// the signal runs at once; a second signal exits 130; the earlier handlers come back.
#include "cli/interrupt.h"

#include <signal.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cli/exit_codes.h"
#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

// Long enough for a loaded machine; the tests wait on notifications, never this long when they
// pass.
constexpr absl::Duration kPatience = absl::Seconds(30);

TEST(InterruptWatcherTest, TheFirstSignalRunsTheActionOnceOnAnotherThread) {
  InterruptWatcher watcher;
  EXPECT_FALSE(watcher.interrupted());
  std::atomic<int> calls{0};
  std::thread::id ran_on;
  absl::Notification ran;
  watcher.OnInterrupt([&] {
    ran_on = std::this_thread::get_id();
    calls.fetch_add(1);
    ran.Notify();
  });
  ASSERT_EQ(raise(SIGINT), 0);
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kPatience));
  EXPECT_TRUE(watcher.interrupted());
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_EQ(calls.load(), 1);
}

TEST(InterruptWatcherTest, AnActionGivenAfterTheSignalRunsAtOnceOnTheCaller) {
  InterruptWatcher watcher;
  absl::Notification first;
  watcher.OnInterrupt([&] { first.Notify(); });
  ASSERT_EQ(raise(SIGTERM), 0);
  ASSERT_TRUE(first.WaitForNotificationWithTimeout(kPatience));
  std::thread::id ran_on;
  watcher.OnInterrupt([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(InterruptWatcherTest, AWatcherWithoutASignalRunsNothing) {
  std::atomic<int> calls{0};
  {
    InterruptWatcher watcher;
    watcher.OnInterrupt([&] { calls.fetch_add(1); });
  }
  EXPECT_EQ(calls.load(), 0);
}

volatile sig_atomic_t earlier_handler_calls = 0;
extern "C" void EarlierHandler(int) { earlier_handler_calls = earlier_handler_calls + 1; }

TEST(InterruptWatcherTest, DestroyingItRestoresTheEarlierHandlers) {
  struct sigaction earlier = {};
  earlier.sa_handler = EarlierHandler;
  sigemptyset(&earlier.sa_mask);
  struct sigaction saved_int, saved_term;
  ASSERT_EQ(sigaction(SIGINT, &earlier, &saved_int), 0);
  ASSERT_EQ(sigaction(SIGTERM, &earlier, &saved_term), 0);
  { InterruptWatcher watcher; }
  // A signal raised on this thread runs its handler before raise() returns.
  ASSERT_EQ(raise(SIGINT), 0);
  ASSERT_EQ(raise(SIGTERM), 0);
  EXPECT_EQ(earlier_handler_calls, 2);
  sigaction(SIGINT, &saved_int, nullptr);
  sigaction(SIGTERM, &saved_term, nullptr);
}

TEST(InterruptWatcherDeathTest, ASecondSignalExitsAtOnceWithTheInterruptedCode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        InterruptWatcher watcher;
        // An action that never returns, as one waiting for a service that does not answer.
        absl::Notification never;
        watcher.OnInterrupt([&never] { never.WaitForNotification(); });
        raise(SIGINT);
        raise(SIGINT);
        never.WaitForNotification();
      },
      ::testing::ExitedWithCode(kExitInterrupted), "mpigate: interrupted again: exiting");
}

}  // namespace
}  // namespace mpigate::cli
