// How mpigate-server picks the pool size: --workers, $MPIGATE_MAX_WORKERS, the MPI universe less
// the running processes (as mpi4py.futures does), the core count.
#include "server/worker_count.h"

#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

TEST(ResolveWorkerCountTest, FlagWinsOverEverything) {
  EXPECT_EQ(ResolveWorkerCount(3, "8", 17, 1, 2).value(), 3);
}

TEST(ResolveWorkerCountTest, EnvironmentWinsOverUniverseAndCores) {
  EXPECT_EQ(ResolveWorkerCount(0, "8", 17, 1, 2).value(), 8);
}

TEST(ResolveWorkerCountTest, UniverseLessTheRunningProcesses) {
  // `mpiexec -n 1 -host node:17` leaves 16 slots for workers.
  EXPECT_EQ(ResolveWorkerCount(0, nullptr, 17, 1, 2).value(), 16);
  EXPECT_EQ(ResolveWorkerCount(0, "", 17, 1, 2).value(), 16);
}

TEST(ResolveWorkerCountTest, SingletonUniverseFallsBackToCores) {
  // A singleton sees a universe of 1: nothing left for workers, so one per core.
  EXPECT_EQ(ResolveWorkerCount(0, nullptr, 1, 1, 4).value(), 4);
  EXPECT_EQ(ResolveWorkerCount(0, nullptr, std::nullopt, 1, 4).value(), 4);
  EXPECT_EQ(ResolveWorkerCount(0, nullptr, std::nullopt, 1, 0).value(), 1);
}

TEST(ResolveWorkerCountTest, MalformedEnvironmentIsInvalidArgument) {
  for (const char* bad : {"zero", "0", "-2", "3x"}) {
    absl::StatusOr<int> count = ResolveWorkerCount(0, bad, 17, 1, 2);
    EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace mpigate::server
