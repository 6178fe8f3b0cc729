// AckBatcher (client/internal/ack_batcher.h): when acknowledgements are due, by number, bytes or
// time, and that taking them swaps buffers.
#include "client/internal/ack_batcher.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace mpigate::internal {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(AckBatcherTest, OneOutcomeIsDueAfterTheDelayFromTheOldest) {
  AckBatcher acks;
  EXPECT_TRUE(acks.empty());
  EXPECT_EQ(acks.due(), absl::InfiniteFuture());
  EXPECT_FALSE(acks.DueAt(kStart + absl::Hours(1)));
  acks.Add({1}, 10, kStart);
  EXPECT_EQ(acks.due(), kStart + AckBatcher::kDelay);
  // Later outcomes do not push the deadline back.
  acks.Add({2, 3}, 10, kStart + AckBatcher::kDelay / 2);
  EXPECT_EQ(acks.due(), kStart + AckBatcher::kDelay);
  EXPECT_FALSE(acks.Full());
  EXPECT_FALSE(acks.DueAt(kStart + AckBatcher::kDelay - absl::Nanoseconds(1)));
  EXPECT_TRUE(acks.DueAt(kStart + AckBatcher::kDelay));
  EXPECT_EQ(acks.ids(), (std::vector<uint64_t>{1, 2, 3}));
}

TEST(AckBatcherTest, ManyOutcomesAreDueAtOnce) {
  AckBatcher acks;
  std::vector<uint64_t> ids(AckBatcher::kMaxIds - 1);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
  acks.Add(ids, 0, kStart);
  EXPECT_FALSE(acks.Full());
  acks.Add({99999}, 0, kStart);
  EXPECT_TRUE(acks.Full());
  EXPECT_TRUE(acks.DueAt(kStart));
}

TEST(AckBatcherTest, LargeOutcomesAreDueAtOnce) {
  AckBatcher acks;
  acks.Add({1}, AckBatcher::kMaxBytes - 1, kStart);
  EXPECT_FALSE(acks.DueAt(kStart));
  acks.Add({2}, 1, kStart);
  EXPECT_TRUE(acks.DueAt(kStart));
}

TEST(AckBatcherTest, TakingStartsANewBatchAndReusesTheBuffer) {
  AckBatcher acks;
  std::vector<uint64_t> out;
  out.reserve(100);
  const uint64_t* spare = out.data();
  acks.Add({4, 5}, AckBatcher::kMaxBytes, kStart);
  acks.TakeInto(out);
  EXPECT_EQ(out, (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE(acks.empty());
  EXPECT_FALSE(acks.Full());
  EXPECT_EQ(acks.due(), absl::InfiniteFuture());
  // The writer's spare buffer is the batch's now: adding to it allocates nothing.
  acks.Add({6}, 0, kStart + absl::Seconds(1));
  EXPECT_EQ(acks.ids().data(), spare);
  EXPECT_EQ(acks.due(), kStart + absl::Seconds(1) + AckBatcher::kDelay);
}

TEST(AckBatcherTest, ClearForgetsTheBatch) {
  AckBatcher acks;
  acks.Add({1}, AckBatcher::kMaxBytes, kStart);
  acks.Clear();
  EXPECT_TRUE(acks.empty());
  EXPECT_FALSE(acks.DueAt(kStart + absl::Hours(1)));
  acks.Add({}, 5, kStart);
  EXPECT_TRUE(acks.empty());
  EXPECT_EQ(acks.due(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace mpigate::internal
