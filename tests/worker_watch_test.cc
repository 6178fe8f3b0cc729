// WorkerWatch against real processes: children of this test that end in different ways, and one
// that is already gone. Waits block on the watch's callback, never on a sleep.
#include "server/worker_watch.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// A child that waits for a signal.
pid_t StartChild() {
  const pid_t pid = fork();
  if (pid == 0) {
    pause();
    _exit(0);
  }
  return pid;
}

// Counts the watch's callbacks, for a test to wait on.
class Ends {
 public:
  void Add() {
    absl::MutexLock lock(&mu_);
    ++count_;
  }
  bool AwaitAtLeast(int count) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return count_ >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Minutes(1));
  }

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(WorkerWatchTest, ReportsEachProcessThatEndsOnceAndNotThoseUnwatched) {
  Ends ends;
  WorkerWatch watch([&ends] { ends.Add(); });
  const pid_t killed = StartChild();
  const pid_t unwatched = StartChild();
  const pid_t alive = StartChild();
  ASSERT_TRUE(watch.Watch(1, killed).ok());
  ASSERT_TRUE(watch.Watch(2, unwatched).ok());
  ASSERT_TRUE(watch.Watch(3, alive).ok());
  watch.Unwatch(2);
  kill(unwatched, SIGKILL);
  kill(killed, SIGKILL);
  ASSERT_TRUE(ends.AwaitAtLeast(1));
  EXPECT_THAT(watch.TakeEnded(), ElementsAre(1u));
  EXPECT_THAT(watch.TakeEnded(), IsEmpty());
  kill(alive, SIGTERM);
  ASSERT_TRUE(ends.AwaitAtLeast(2));
  EXPECT_THAT(watch.TakeEnded(), ElementsAre(3u));
  for (const pid_t pid : {killed, unwatched, alive}) waitpid(pid, nullptr, 0);
}

TEST(WorkerWatchTest, AProcessGoneAlreadyIsReportedAtOnce) {
  Ends ends;
  WorkerWatch watch([&ends] { ends.Add(); });
  const pid_t gone = StartChild();
  kill(gone, SIGKILL);
  waitpid(gone, nullptr, 0);
  ASSERT_TRUE(watch.Watch(7, gone).ok());
  ASSERT_TRUE(ends.AwaitAtLeast(1));
  EXPECT_THAT(watch.TakeEnded(), UnorderedElementsAre(7u));
}

}  // namespace
}  // namespace mpigate::server
