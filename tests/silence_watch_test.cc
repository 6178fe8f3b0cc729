// SilenceWatch: which workers' heartbeats have stopped, with times given by the test.
#include "server/silence_watch.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kLimit = absl::Seconds(1);
const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(SilenceWatchTest, AProcessSilentPastTheLimitIsReportedOnce) {
  SilenceWatch watch(kLimit);
  watch.Watch(1, kStart);
  watch.Watch(2, kStart);
  watch.Heard(2, kStart + absl::Milliseconds(600), /*quiet=*/false);
  EXPECT_THAT(watch.TakeSilent(kStart + kLimit), IsEmpty()) << "exactly the limit is not past it";
  EXPECT_THAT(watch.TakeSilent(kStart + kLimit + absl::Milliseconds(1)), ElementsAre(1));
  EXPECT_THAT(watch.TakeSilent(kStart + absl::Seconds(10)), ElementsAre(2));
  EXPECT_THAT(watch.TakeSilent(kStart + absl::Seconds(20)), IsEmpty());
  EXPECT_TRUE(watch.empty());
}

TEST(SilenceWatchTest, QuietStopsTheCountUntilTheNextHeartbeatThatIsNot) {
  SilenceWatch watch(kLimit);
  watch.Watch(1, kStart);
  watch.Watch(2, kStart);
  watch.Heard(1, kStart + absl::Milliseconds(100), /*quiet=*/true);
  EXPECT_THAT(watch.TakeSilent(kStart + absl::Minutes(5)), ElementsAre(2));
  EXPECT_THAT(watch.Quiet(), ElementsAre(1)) << "watched by other means while quiet";
  const absl::Time loud = kStart + absl::Minutes(6);
  watch.Heard(1, loud, /*quiet=*/false);
  EXPECT_THAT(watch.Quiet(), IsEmpty());
  EXPECT_THAT(watch.TakeSilent(loud + kLimit), IsEmpty());
  EXPECT_THAT(watch.TakeSilent(loud + absl::Seconds(2)), ElementsAre(1));
}

TEST(SilenceWatchTest, UnwatchedProcessesAreNeverReportedAndTheirHeartbeatsIgnored) {
  SilenceWatch watch(kLimit);
  watch.Watch(1, kStart);
  watch.Watch(2, kStart);
  watch.Watch(3, kStart);
  watch.Unwatch(2);
  watch.Unwatch(7);
  watch.Heard(9, kStart, /*quiet=*/false);
  EXPECT_THAT(watch.TakeSilent(kStart + absl::Seconds(2)), UnorderedElementsAre(1, 3));
}

}  // namespace
}  // namespace mpigate::server
