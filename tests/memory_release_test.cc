// The gateway and the task runners give back what a peak took: unit tests of when
// IdleMemoryRelease releases, and end-to-end tests on a real pool that the gateway's and a task
// runner's resident memory fall back near where they started once large tasks are over.
#include "common/memory_release.h"

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gtest/gtest.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(ShouldReleaseTest, OnlyWhenQuietAndHoldingMoreThanItKeeps) {
  const HeapUse busy_before{.in_use = 100 * kMiB, .free_held = 300 * kMiB};
  const HeapUse busy_now{.in_use = 120 * kMiB, .free_held = 300 * kMiB};
  EXPECT_FALSE(ShouldRelease(busy_before, busy_now, 32 * kMiB)) << "tasks still flow";
  EXPECT_TRUE(ShouldRelease(busy_now, busy_now, 32 * kMiB));
  const HeapUse little_free{.in_use = 120 * kMiB, .free_held = 8 * kMiB};
  EXPECT_FALSE(ShouldRelease(little_free, little_free, 32 * kMiB)) << "nothing worth it";
}

TEST(IdleMemoryReleaseTest, TheGatewayGivesBackWhatABurstOfLargeTasksTook) {
  if (testing::kSanitizerAllocator) {
    GTEST_SKIP() << "the sanitizers' allocators keep freed memory in quarantine, out of reach of "
                    "the release; the optimized build (bazel test //tests:memory_release_test) "
                    "runs this";
  }
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--idle_memory_release_s=0.2"}}).ok());
  const absl::StatusOr<uint64_t> before = testing::ResidentBytes(server.pid());
  ASSERT_TRUE(before.ok()) << before.status();
  {
    // Through the stream, not shared memory: every payload and result passes the gateway.
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
        {.endpoint = server.target(), .shared_memory_min_bytes = uint64_t{1} << 40});
    ASSERT_TRUE(executor.ok()) << executor.status();
    const std::string payload(kMiB, 'p');
    std::vector<Future> echoes;
    for (int i = 0; i < 300; ++i) echoes.push_back((*executor)->Submit("echo", payload));
    for (Future& echo : echoes) {
      absl::StatusOr<std::string> result = echo.Result();
      ASSERT_TRUE(result.ok()) << result.status();
      ASSERT_EQ(result->size(), payload.size());
    }
  }
  const absl::StatusOr<uint64_t> peak = testing::PeakResidentBytes(server.pid());
  ASSERT_TRUE(peak.ok()) << peak.status();
  // The queued payloads alone took 300 MiB: the peak shows the burst passed through.
  ASSERT_GT(*peak, *before + 200 * kMiB);

  // Without the release the gateway held its peak for good; with it, it falls back within a few
  // quiet intervals. Looked at every 20 ms, for up to a minute.
  const uint64_t bound = *before + 64 * kMiB;
  uint64_t now = *peak;
  for (const absl::Time deadline = absl::Now() + absl::Minutes(1);
       now > bound && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    const absl::StatusOr<uint64_t> resident = testing::ResidentBytes(server.pid());
    ASSERT_TRUE(resident.ok()) << resident.status();
    now = *resident;
  }
  EXPECT_LE(now, bound) << "resident " << (now / kMiB) << " MiB, started at " << (*before / kMiB)
                        << " MiB, peak " << (*peak / kMiB) << " MiB";
  ASSERT_TRUE(server.Stop().ok());
}

TEST(RunnerMemoryReleaseTest, ATaskRunnerGivesBackWhatALargeTaskTookOnceIdle) {
  if (testing::kSanitizerAllocator) {
    GTEST_SKIP() << "the sanitizers' allocators keep freed memory in quarantine, out of reach of "
                    "the release; the optimized build (bazel test //tests:memory_release_test) "
                    "runs this";
  }
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target()});
  ASSERT_TRUE(executor.ok()) << executor.status();
  // The runner has said hello once a task has run.
  ASSERT_TRUE((*executor)->Submit("echo", "warm").Result().ok());
  const std::vector<pid_t> runners =
      testing::DescendantsNamed(server.pool_root(), "mpigate-runner");
  ASSERT_EQ(runners.size(), 1u);
  const absl::StatusOr<uint64_t> before = testing::ResidentBytes(runners[0]);
  ASSERT_TRUE(before.ok()) << before.status();

  const std::string payload(128 * kMiB, 'p');
  absl::StatusOr<std::string> echoed = (*executor)->Submit("echo", payload).Result();
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  ASSERT_EQ(echoed->size(), payload.size());
  const absl::StatusOr<uint64_t> peak = testing::PeakResidentBytes(runners[0]);
  ASSERT_TRUE(peak.ok()) << peak.status();
  ASSERT_GT(*peak, *before + 100 * kMiB) << "the echo's result passed through the runner";

  // Without the release the runner held the echo's pages for as long as it lived; with it, they go
  // once it has waited a few seconds for its next task. Looked at every 20 ms, for up to a minute.
  const uint64_t bound = *before + 48 * kMiB;
  uint64_t now = *peak;
  for (const absl::Time deadline = absl::Now() + absl::Minutes(1);
       now > bound && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    const absl::StatusOr<uint64_t> resident = testing::ResidentBytes(runners[0]);
    ASSERT_TRUE(resident.ok()) << resident.status();
    now = *resident;
  }
  EXPECT_LE(now, bound) << "resident " << (now / kMiB) << " MiB, started at " << (*before / kMiB)
                        << " MiB, peak " << (*peak / kMiB) << " MiB";
  // And it still serves.
  EXPECT_TRUE((*executor)->Submit("echo", "after").Result().ok());
  ASSERT_TRUE(server.Stop().ok());
}

}  // namespace
}  // namespace mpigate
