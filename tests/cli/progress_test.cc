// The arithmetic and text of `mpigate map`'s progress: rates, ETA, bar, lines, summary.
#include "cli/progress.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

TEST(RateMeterTest, ZeroUntilTwoSamplesApartInTime) {
  RateMeter rate;
  EXPECT_EQ(rate.ItemsPerSecond(), 0);
  rate.Record(kStart, 0);
  EXPECT_EQ(rate.ItemsPerSecond(), 0);
  rate.Record(kStart, 5);
  EXPECT_EQ(rate.ItemsPerSecond(), 0);
  rate.Record(kStart + absl::Seconds(2), 100);
  EXPECT_DOUBLE_EQ(rate.ItemsPerSecond(), 50);
}

TEST(RateMeterTest, FollowsTheLastWindowOnly) {
  RateMeter rate(absl::Seconds(5));
  // 10 items/s for 10 s, then 100 items/s: after 5 s of the faster pace the rate is that pace.
  size_t done = 0;
  for (int second = 0; second <= 10; ++second) {
    rate.Record(kStart + absl::Seconds(second), done);
    done += 10;
  }
  done -= 10;
  for (int second = 11; second <= 16; ++second) {
    done += 100;
    rate.Record(kStart + absl::Seconds(second), done);
  }
  EXPECT_DOUBLE_EQ(rate.ItemsPerSecond(), 100);
}

TEST(EstimateRemainingTest, FromTheRateAndUnknownWithoutOne) {
  EXPECT_EQ(EstimateRemaining({.total = 100, .done = 40, .items_per_second = 20}),
            absl::Seconds(3));
  EXPECT_EQ(EstimateRemaining({.total = 100, .done = 40, .items_per_second = 0}), std::nullopt);
  EXPECT_EQ(EstimateRemaining({.total = 100, .done = 100, .items_per_second = 0}),
            absl::ZeroDuration());
  EXPECT_EQ(EstimateRemaining({.total = 0, .done = 0}), absl::ZeroDuration());
}

TEST(FormatTest, ShortDurationsRoundUpToWholeSeconds) {
  EXPECT_EQ(FormatShortDuration(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatShortDuration(absl::Milliseconds(200)), "1s");
  EXPECT_EQ(FormatShortDuration(absl::Seconds(59)), "59s");
  EXPECT_EQ(FormatShortDuration(absl::Seconds(65)), "1m05s");
  EXPECT_EQ(FormatShortDuration(absl::Hours(2) + absl::Minutes(3) + absl::Seconds(4)), "2h03m");
  EXPECT_EQ(FormatShortDuration(-absl::Seconds(3)), "0s");
}

TEST(FormatTest, RatesKeepThreeOrFourDigits) {
  EXPECT_EQ(FormatRate(0), "0/s");
  EXPECT_EQ(FormatRate(0.25), "0.2/s");
  EXPECT_EQ(FormatRate(42.4), "42/s");
  EXPECT_EQ(FormatRate(1234), "1234/s");
  EXPECT_EQ(FormatRate(12345), "12.3k/s");
  EXPECT_EQ(FormatRate(45'000'000), "45.0M/s");
}

TEST(FormatProgressBarTest, ShowsDoneTotalFailedRateAndEta) {
  const ProgressSnapshot snapshot = {
      .total = 10000, .done = 2500, .failed = 3, .items_per_second = 2500};
  const std::string bar = FormatProgressBar(snapshot, 100);
  EXPECT_EQ(bar,
            "[##########------------------------------]  2500/10000   25%  failed 3  2500/s"
            "  ETA 3s");
  EXPECT_LE(bar.size(), 99u);
}

TEST(FormatProgressBarTest, FitsNarrowTerminalsAndDropsTheBarWhenTooNarrow) {
  const ProgressSnapshot snapshot = {.total = 200, .done = 50, .failed = 0};
  const std::string narrow = FormatProgressBar(snapshot, 60);
  EXPECT_LE(narrow.size(), 59u);
  EXPECT_THAT(narrow, StartsWith("[###"));
  EXPECT_THAT(narrow, HasSubstr("50/200   25%  failed 0  0/s  ETA --"));
  EXPECT_EQ(FormatProgressBar(snapshot, 30), "50/200   25%  failed 0  0/s  ETA --");
}

TEST(FormatProgressBarTest, FullWhenDone) {
  const std::string bar =
      FormatProgressBar({.total = 7, .done = 7, .failed = 7, .items_per_second = 1}, 80);
  EXPECT_THAT(bar, StartsWith("[########################################]  7/7  100%  failed 7"));
  EXPECT_THAT(bar, HasSubstr("ETA 0s"));
}

TEST(FormatProgressLineTest, OneLineForALog) {
  EXPECT_EQ(
      FormatProgressLine({.total = 10000, .done = 1234, .failed = 3, .items_per_second = 2300}),
      "mpigate: map: 1234/10000 done, 3 failed, 2300/s, ETA 4s");
}

TEST(FormatSummaryTest, CountsAndRate) {
  EXPECT_EQ(
      FormatSummary("echo", {.total = 10000, .done = 10000, .failed = 3}, absl::Milliseconds(4210)),
      "mpigate: map echo: 10000 items, 9997 succeeded, 3 failed in 4.21s (2375/s)");
  EXPECT_EQ(FormatSummary("echo", {.total = 1, .done = 1}, absl::Seconds(1)),
            "mpigate: map echo: 1 item, 1 succeeded, 0 failed in 1.00s (1.0/s)");
  EXPECT_EQ(FormatSummary("echo", {}, absl::ZeroDuration()),
            "mpigate: map echo: 0 items, 0 succeeded, 0 failed in 0.00s (0/s)");
}

}  // namespace
}  // namespace mpigate::cli
