// WorkerPicker: which worker takes the next task, and the prefetch policy, without a scheduler.
#include "server/worker_picker.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;

const absl::Time kStart = absl::UnixEpoch() + absl::Hours(1);

// The workers picked, or none.
absl::InlinedVector<int, 1> Picked(WorkerPicker& picker, size_t count, bool group,
                                   absl::Time now = kStart) {
  absl::InlinedVector<int, 1> members;
  if (!picker.Pick(count, group, /*one_job=*/false, now, members)) members.clear();
  return members;
}

// The workers picked for a gang of `count`, or none.
absl::InlinedVector<int, 1> PickedGang(WorkerPicker& picker, size_t count) {
  absl::InlinedVector<int, 1> members;
  if (!picker.Pick(count, /*group=*/true, /*one_job=*/true, kStart, members)) members.clear();
  return members;
}

TEST(WorkerPickerTest, NoWorkerIsIdleBeforeMakeAllIdle) {
  // Up to four tasks each, a 1 ms window: ten tasks of 100 us would fit.
  WorkerPicker picker(3, 4, absl::Milliseconds(1));
  EXPECT_FALSE(picker.HasRoom());
  EXPECT_TRUE(Picked(picker, 1, false).empty());
}

TEST(WorkerPickerTest, TakesTheLowestNumberedWorkerFirstAndReusesTheLastFreed) {
  // Up to four tasks each, a 1 ms window: ten tasks of 100 us would fit.
  WorkerPicker picker(3, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 10, false, kStart);
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(1));
  picker.Assign({1}, 11, false, kStart);
  WorkerPicker::TaskKey next = 99;
  ASSERT_TRUE(picker.Release(1, 11, kStart, next));
  EXPECT_EQ(next, 0u);
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(1));
}

TEST(WorkerPickerTest, AGroupTakesTheLowestNumberedIdleWorkersOrNone) {
  // Up to four tasks each, a 1 ms window: ten tasks of 100 us would fit.
  WorkerPicker picker(3, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 10, false, kStart);
  EXPECT_THAT(Picked(picker, 2, true), ElementsAre(1, 2));
  picker.Assign({1, 2}, 11, true, kStart);
  EXPECT_EQ(picker.busy(), 3u);
  // A group never goes behind another task.
  EXPECT_TRUE(Picked(picker, 2, true).empty());
  EXPECT_EQ(picker.idle(), 0u);
}

TEST(WorkerPickerTest, HandsABusyWorkerMoreOnlyOnceItsTasksAreKnownToBeShort) {
  WorkerPicker picker(1, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  EXPECT_FALSE(picker.Assign({0}, 1, false, kStart));
  // Nothing learnt yet: one task at a time.
  EXPECT_TRUE(Picked(picker, 1, false).empty());
  WorkerPicker::TaskKey next = 0;
  ASSERT_TRUE(picker.Release(0, 1, kStart, next));
  picker.Learn(0, 100);
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  EXPECT_FALSE(picker.Assign({0}, 2, false, kStart));
  // 100 us tasks: ten fit the window, but a worker holds at most four.
  for (WorkerPicker::TaskKey key = 3; key <= 5; ++key) {
    ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0)) << key;
    EXPECT_TRUE(picker.Assign({0}, key, false, kStart));
  }
  EXPECT_TRUE(Picked(picker, 1, false).empty());
  EXPECT_EQ(picker.worker(0).tasks.size(), 4u);
}

TEST(WorkerPickerTest, LongTasksKeepTheBacklogWithinTheWindow) {
  WorkerPicker picker(1, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 1, false, kStart);
  WorkerPicker::TaskKey next = 0;
  ASSERT_TRUE(picker.Release(0, 1, kStart, next));
  picker.Learn(0, 400);
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 2, false, kStart);
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 3, false, kStart);
  // Two tasks of 400 us fill the window.
  EXPECT_TRUE(Picked(picker, 1, false).empty());
  EXPECT_EQ(picker.worker(0).depth, 2u);
}

TEST(WorkerPickerTest, ClosesAWorkerWhoseRunningTaskOverrunsTenWindows) {
  WorkerPicker picker(1, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 1, false, kStart);
  WorkerPicker::TaskKey next = 0;
  ASSERT_TRUE(picker.Release(0, 1, kStart, next));
  picker.Learn(0, 10);
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 2, false, kStart);
  EXPECT_THAT(Picked(picker, 1, false, kStart + absl::Milliseconds(10)), ElementsAre(0));
  EXPECT_TRUE(Picked(picker, 1, false, kStart + absl::Milliseconds(11)).empty());
  EXPECT_FALSE(picker.HasRoom());
  // Its next task runs from when the long one ended: open again.
  picker.Assign({0}, 3, false, kStart);
  ASSERT_TRUE(picker.Release(0, 2, kStart + absl::Milliseconds(12), next));
  EXPECT_EQ(next, 3u);
  picker.Learn(0, 10);
  EXPECT_TRUE(picker.HasRoom());
}

TEST(WorkerPickerTest, ReleaseNamesTheTaskThatRunsNextOnlyWhenTheFirstEnds) {
  WorkerPicker picker(1, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  ASSERT_THAT(Picked(picker, 1, false), ElementsAre(0));
  picker.Assign({0}, 1, false, kStart);
  picker.Assign({0}, 2, false, kStart);
  picker.Assign({0}, 3, false, kStart);
  WorkerPicker::TaskKey next = 0;
  EXPECT_FALSE(picker.Release(0, 7, kStart, next));
  ASSERT_TRUE(picker.Release(0, 2, kStart, next));
  EXPECT_EQ(next, 0u);
  ASSERT_TRUE(picker.Release(0, 1, kStart, next));
  EXPECT_EQ(next, 3u);
  EXPECT_TRUE(picker.Holds(0, 3));
  EXPECT_FALSE(picker.Holds(0, 1));
  ASSERT_TRUE(picker.Release(0, 3, kStart, next));
  EXPECT_EQ(picker.busy(), 0u);
  EXPECT_EQ(picker.idle(), 1u);
}

TEST(WorkerPickerTest, AWorkerOutOfServiceTakesNothingUntilItIsUp) {
  // Up to four tasks each, a 1 ms window: ten tasks of 100 us would fit.
  WorkerPicker picker(3, 4, absl::Milliseconds(1));
  picker.MakeAllIdle();
  EXPECT_TRUE(picker.TakeIdle(0));
  EXPECT_FALSE(picker.TakeIdle(0));
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(1));
  picker.Assign({1}, 5, false, kStart);
  EXPECT_TRUE(picker.Lose(1));
  EXPECT_FALSE(picker.Lose(1));
  WorkerPicker::TaskKey next = 0;
  ASSERT_TRUE(picker.Release(1, 5, kStart, next));
  picker.RemoveIdle(1);
  EXPECT_EQ(picker.down(), 2u);
  EXPECT_EQ(picker.lost(), 1u);
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(2));
  EXPECT_TRUE(Picked(picker, 1, false).empty());
  EXPECT_TRUE(picker.Up(0, /*job=*/0));
  EXPECT_FALSE(picker.Up(0, /*job=*/0));
  EXPECT_EQ(picker.down(), 1u);
  EXPECT_THAT(Picked(picker, 1, false), ElementsAre(0));
}

TEST(WorkerPickerTest, AGangTakesIdleWorkersOfOneJobOnly) {
  WorkerPicker picker(4, 1, absl::Milliseconds(1));
  picker.MakeAllIdle();
  // Workers 1 and 2 were lost and are served again by processes of a new job; 0 and 3 are still
  // of the first.
  for (const int lost : {1, 2}) {
    ASSERT_TRUE(picker.Lose(lost));
    picker.RemoveIdle(lost);
    ASSERT_TRUE(picker.Up(lost, /*job=*/1));
  }
  // Four idle workers, but no three of one job: a gang of three waits, one of two takes the
  // lowest-numbered pair of one job, and a broadcast takes any.
  EXPECT_TRUE(picker.HasIdle(3, /*one_job=*/false));
  EXPECT_FALSE(picker.HasIdle(3, /*one_job=*/true));
  EXPECT_TRUE(PickedGang(picker, 3).empty());
  EXPECT_EQ(picker.idle(), 4u) << "a gang that waits takes no worker";
  EXPECT_THAT(PickedGang(picker, 2), ElementsAre(1, 2));
  picker.Assign({1, 2}, 7, /*group=*/true, kStart);
  // Worker 0 moves onto the new job, 3 not yet: no pair of one job is idle until it does.
  ASSERT_TRUE(picker.TakeIdle(0));
  ASSERT_TRUE(picker.Up(0, /*job=*/1));
  EXPECT_FALSE(picker.HasIdle(2, /*one_job=*/true));
  EXPECT_TRUE(PickedGang(picker, 2).empty());
  ASSERT_TRUE(picker.TakeIdle(3));
  ASSERT_TRUE(picker.Up(3, /*job=*/1));
  EXPECT_TRUE(picker.HasIdle(2, /*one_job=*/true));
  EXPECT_THAT(PickedGang(picker, 2), ElementsAre(0, 3));
}

}  // namespace
}  // namespace mpigate::server
