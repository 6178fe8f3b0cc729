// PoolHealth: the pause between failed replacements and the pool's degraded reason, with times
// given by the test.
#include "server/pool_health.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(PoolHealthTest, PauseDoublesFromASecondUpToAMinute) {
  EXPECT_EQ(PoolHealth::SpawnPause(0), absl::ZeroDuration());
  EXPECT_EQ(PoolHealth::SpawnPause(1), absl::Seconds(1));
  EXPECT_EQ(PoolHealth::SpawnPause(2), absl::Seconds(2));
  EXPECT_EQ(PoolHealth::SpawnPause(6), absl::Seconds(32));
  EXPECT_EQ(PoolHealth::SpawnPause(7), absl::Seconds(60));
  EXPECT_EQ(PoolHealth::SpawnPause(1000), absl::Seconds(60));
}

TEST(PoolHealthTest, EachFailureInARowPushesTheNextSpawnFurther) {
  PoolHealth health(/*world=*/false);
  EXPECT_EQ(health.next_spawn(), absl::InfinitePast());
  health.CountFailure(kStart);
  EXPECT_EQ(health.next_spawn(), kStart + absl::Seconds(1));
  health.CountFailure(kStart);
  EXPECT_EQ(health.failures(), 2);
  EXPECT_EQ(health.next_spawn(), kStart + absl::Seconds(2));
  health.ResetFailures();
  EXPECT_EQ(health.failures(), 0);
}

TEST(PoolHealthTest, AHeldSpawnWaitsPastItsPauseAndAShorterHoldChangesNothing) {
  PoolHealth health(/*world=*/false);
  health.HoldSpawnUntil(kStart + absl::Seconds(10));
  health.CountFailure(kStart);  // Its pause, 1 s, ends before the hold.
  EXPECT_EQ(health.next_spawn(), kStart + absl::Seconds(10));
  health.HoldSpawnUntil(kStart + absl::Seconds(5));
  EXPECT_EQ(health.next_spawn(), kStart + absl::Seconds(10));
  health.CountFailure(kStart + absl::Seconds(20));  // A later failure's pause goes past it.
  EXPECT_EQ(health.next_spawn(), kStart + absl::Seconds(22));
}

TEST(PoolHealthTest, ShortLivedIsBootingOrYoungerThanTenSeconds) {
  EXPECT_TRUE(PoolHealth::ShortLived(/*booting=*/true, absl::InfinitePast(), kStart));
  EXPECT_TRUE(PoolHealth::ShortLived(false, kStart - absl::Seconds(9), kStart));
  EXPECT_FALSE(PoolHealth::ShortLived(false, kStart - absl::Seconds(10), kStart));
}

TEST(PoolHealthTest, AWholePoolHasNoReasonAndNeedsNoUpdateUntilSomethingChanges) {
  PoolHealth health(/*world=*/false);
  EXPECT_TRUE(health.NeedsUpdate(kStart, 0)) << "the first round always looks";
  const PoolHealth::Shape whole{/*workers=*/2, /*down=*/0, /*spawn_due=*/false, kStart};
  EXPECT_EQ(health.Update(kStart, 0, whole), std::nullopt) << "already empty: no change";
  EXPECT_FALSE(health.NeedsUpdate(kStart + absl::Hours(1), 0));
  EXPECT_TRUE(health.NeedsUpdate(kStart, 1)) << "the process table changed";
  health.SetLastLoss("worker 1 was lost");
  EXPECT_TRUE(health.NeedsUpdate(kStart, 0));
}

TEST(PoolHealthTest, ReasonSaysHowManyAreDownWhyAndWhatHappensNext) {
  PoolHealth health(/*world=*/false);
  health.SetLastLoss("worker 1 on h (pid 7) was lost: gone");
  const PoolHealth::Shape down{2, 1, /*spawn_due=*/true, kStart};
  EXPECT_THAT(health.Update(kStart, 1, down),
              Optional(std::string("1 of 2 workers out of service; worker 1 on h (pid 7) was "
                                   "lost: gone; replacements are starting")));
  EXPECT_EQ(health.Update(kStart, 2, down), std::nullopt) << "same reason: not told again";
}

TEST(PoolHealthTest, FailingReplacementsCountDownToTheNextAttemptEverySecond) {
  PoolHealth health(/*world=*/false);
  health.SetLastLoss("a replacement failed to start: boom");
  health.CountFailure(kStart);
  health.CountFailure(kStart);
  const PoolHealth::Shape down{2, 1, true, kStart};
  std::optional<std::string> reason = health.Update(kStart, 1, down);
  ASSERT_TRUE(reason.has_value());
  EXPECT_THAT(*reason, HasSubstr("replacements keep failing (2 in a row): the next attempt "
                                 "within 2s"));
  EXPECT_FALSE(health.NeedsUpdate(kStart + absl::Milliseconds(999), 1));
  EXPECT_TRUE(health.NeedsUpdate(kStart + absl::Seconds(1), 1));
  EXPECT_THAT(health.Update(kStart + absl::Milliseconds(1500), 1, down),
              Optional(HasSubstr("the next attempt within 1s")));
}

TEST(PoolHealthTest, WorldModeSaysNothingCanReplaceThem) {
  PoolHealth health(/*world=*/true);
  health.SetLastLoss("worker 0 was lost: x");
  EXPECT_THAT(health.Update(kStart, 1, {2, 1, false, kStart}),
              Optional(HasSubstr("; in world mode nothing can replace them")));
}

TEST(PoolHealthTest, WholeAgainForgetsFailuresOnceItsProcessesLivedTenSeconds) {
  PoolHealth health(/*world=*/false);
  health.CountFailure(kStart);
  health.SetLastLoss("x");
  ASSERT_TRUE(health.Update(kStart, 1, {2, 1, true, kStart}).has_value());
  const absl::Time up = kStart + absl::Seconds(3);
  EXPECT_THAT(health.Update(up, 2, {2, 0, false, up}), Optional(std::string()));
  EXPECT_EQ(health.failures(), 1) << "its processes are young yet";
  EXPECT_FALSE(health.NeedsUpdate(up + absl::Seconds(9), 2));
  EXPECT_TRUE(health.NeedsUpdate(up + absl::Seconds(10), 2));
  EXPECT_EQ(health.Update(up + absl::Seconds(10), 2, {2, 0, false, up}), std::nullopt);
  EXPECT_EQ(health.failures(), 0);
}

}  // namespace
}  // namespace mpigate::server
