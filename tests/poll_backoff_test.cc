#include "wire/poll_backoff.h"

#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::wire {
namespace {

using ::testing::ElementsAre;

std::vector<absl::Duration> NextDelays(PollBackoff& backoff, int count) {
  std::vector<absl::Duration> delays;
  for (int i = 0; i < count; ++i) delays.push_back(backoff.NextDelay());
  return delays;
}

PollBackoff::Options SmallOptions() {
  PollBackoff::Options options;
  options.hot_polls = 3;
  options.min_sleep = absl::Microseconds(2);
  options.max_sleep = absl::Microseconds(10);
  return options;
}

TEST(PollBackoffTest, HotPhaseThenDoublingUpToCap) {
  PollBackoff backoff(SmallOptions());
  const absl::Duration zero = absl::ZeroDuration();
  EXPECT_THAT(NextDelays(backoff, 8),
              ElementsAre(zero, zero, zero, absl::Microseconds(2), absl::Microseconds(4),
                          absl::Microseconds(8), absl::Microseconds(10), absl::Microseconds(10)));
}

TEST(PollBackoffTest, StaysAtCapWhileIdle) {
  PollBackoff backoff(SmallOptions());
  NextDelays(backoff, 7);
  // Saturating doubling must not overflow into something shorter than the cap.
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(backoff.NextDelay(), absl::Microseconds(10));
}

TEST(PollBackoffTest, SettledOnceTheNextSleepIsTheCap) {
  PollBackoff backoff(SmallOptions());
  // Three hot polls, then sleeps of 2, 4 and 8 us; the next would be the cap.
  for (int i = 0; i < 6; ++i) {
    EXPECT_FALSE(backoff.Settled()) << "before delay " << i;
    backoff.NextDelay();
  }
  EXPECT_TRUE(backoff.Settled());
  backoff.NextDelay();
  EXPECT_TRUE(backoff.Settled());
  backoff.Reset();
  EXPECT_FALSE(backoff.Settled());
}

TEST(PollBackoffTest, ResetRestoresHotPhaseAndMinSleep) {
  PollBackoff backoff(SmallOptions());
  NextDelays(backoff, 10);
  backoff.Reset();
  const absl::Duration zero = absl::ZeroDuration();
  EXPECT_THAT(NextDelays(backoff, 5),
              ElementsAre(zero, zero, zero, absl::Microseconds(2), absl::Microseconds(4)));
}

TEST(PollBackoffTest, ResetDuringHotPhaseRefillsIt) {
  PollBackoff backoff(SmallOptions());
  NextDelays(backoff, 2);
  backoff.Reset();
  const absl::Duration zero = absl::ZeroDuration();
  EXPECT_THAT(NextDelays(backoff, 4), ElementsAre(zero, zero, zero, absl::Microseconds(2)));
}

TEST(PollBackoffTest, NoHotPhaseStartsAtMinSleep) {
  PollBackoff::Options options = SmallOptions();
  options.hot_polls = 0;
  PollBackoff backoff(options);
  EXPECT_THAT(NextDelays(backoff, 3),
              ElementsAre(absl::Microseconds(2), absl::Microseconds(4), absl::Microseconds(8)));
}

TEST(PollBackoffTest, SettleAfterHotPollsSkipsTheSleepsBelowTheCap) {
  PollBackoff backoff(SmallOptions());
  backoff.SettleAfterHotPolls();
  const absl::Duration zero = absl::ZeroDuration();
  EXPECT_THAT(NextDelays(backoff, 5),
              ElementsAre(zero, zero, zero, absl::Microseconds(10), absl::Microseconds(10)));
  EXPECT_TRUE(backoff.Settled());
  // Progress makes the polls hot again, and the sleeps after them grow again.
  backoff.Reset();
  EXPECT_THAT(NextDelays(backoff, 4), ElementsAre(zero, zero, zero, absl::Microseconds(2)));
}

TEST(PollBackoffTest, DefaultOptions) {
  PollBackoff backoff;
  for (int i = 0; i < 256; ++i) {
    ASSERT_EQ(backoff.NextDelay(), absl::ZeroDuration()) << "poll " << i;
  }
  // 2 us doubling: 2, 4, ..., 512 us (9 sleeps), then capped at 1 ms.
  absl::Duration expected = absl::Microseconds(2);
  for (int i = 0; i < 9; ++i) {
    ASSERT_EQ(backoff.NextDelay(), expected) << "sleep " << i;
    expected *= 2;
  }
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(1));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(1));
}

}  // namespace
}  // namespace mpigate::wire
