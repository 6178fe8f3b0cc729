// A task's run timeout as the worker applies it. No MPI.
#include "worker/run_timeout.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"

namespace mpigate::worker {
namespace {

TEST(RunDeadlineTest, ZeroIsNever) {
  EXPECT_EQ(RunDeadline(0, absl::UnixEpoch()), absl::InfiniteFuture());
}

TEST(RunDeadlineTest, CountsFromTheStart) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  EXPECT_EQ(RunDeadline(1500, start), start + absl::Milliseconds(1500));
}

TEST(RunDeadlineTest, AHugeTimeoutDoesNotWrapIntoThePast) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  EXPECT_GT(RunDeadline(std::numeric_limits<uint64_t>::max(), start), start + absl::Hours(1e6));
}

TEST(FailPastDeadlineTest, KeepsKeyAndRunTimeAndReplacesTheOutcome) {
  wire::ResultFrame result;
  result.set_task_key(42);
  result.set_run_us(1234);
  result.set_result("too late");
  result.add_items()->set_result("item");
  FailPastDeadline(50, "killed", result);
  EXPECT_EQ(result.task_key(), 42u);
  EXPECT_EQ(result.run_us(), 1234u);
  EXPECT_FALSE(result.has_result());
  EXPECT_EQ(result.items_size(), 0);
  EXPECT_EQ(result.error().code(), static_cast<int32_t>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(result.error().message(), "task ran past its run timeout of 50 ms and was killed");
}

}  // namespace
}  // namespace mpigate::worker
