// HelloDeadline: a worker that has not said hello in time ends itself, saying what it waited for;
// one that has, or that has no deadline, lives on.
#include "worker/hello_deadline.h"

#include <dirent.h>
#include <unistd.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace mpigate::worker {
namespace {

TEST(HelloDeadlineDeathTest, AMissedDeadlineEndsTheProcessWithStatusOne) {
  EXPECT_EXIT(
      {
        HelloDeadline deadline(absl::Milliseconds(20), "MPI_Init");
        pause();
      },
      ::testing::ExitedWithCode(1),
      "mpigate-worker: MPI_Init not done within 20ms: the gateway has given this worker up");
}

TEST(HelloDeadlineDeathTest, AMetDeadlineLeavesTheProcessAlive) {
  EXPECT_EXIT(
      {
        HelloDeadline deadline(absl::Milliseconds(20), "the hello");
        deadline.Met();
        // Well past the deadline: its thread has ended.
        absl::SleepFor(absl::Milliseconds(100));
        _exit(7);
      },
      ::testing::ExitedWithCode(7), "");
}

// The threads of this process, from /proc.
int ThreadCount() {
  DIR* tasks = opendir("/proc/self/task");
  int count = 0;
  while (const dirent* entry = readdir(tasks)) count += entry->d_name[0] != '.';
  closedir(tasks);
  return count;
}

TEST(HelloDeadlineTest, AnInfiniteTimeoutStartsNoThreadAndAFiniteOneAThreadUntilMet) {
  const int before = ThreadCount();
  {
    HelloDeadline never(absl::InfiniteDuration(), "the hello");
    EXPECT_EQ(ThreadCount(), before);
  }
  HelloDeadline deadline(absl::Hours(1), "the hello");
  EXPECT_EQ(ThreadCount(), before + 1);
  deadline.Met();
  EXPECT_EQ(ThreadCount(), before);  // Joined.
  deadline.Met();  // Idempotent, as the destructor calls it again.
}

}  // namespace
}  // namespace mpigate::worker
