// RuntimeWatch's reading of the runtime's process table (the table itself comes from Open MPI's
// runtime: tests/multihost/multihost_spawn_loss_test.sh's gang scenario asks a real one).
#include "server/runtime_watch.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::Eq;
using ::testing::Optional;

// ORTE's states as Open MPI 4.1's runtime reports them.
constexpr uint32_t kRunning = 6;
constexpr uint32_t kAbortedBySignal = 54;
constexpr uint32_t kExitedNonZero = 62;

TEST(RuntimeSaysEndedTest, AnEndedProcessOfTheSamePidSaysHow) {
  const std::vector<RuntimeProcess> table = {
      {.rank = 0, .pid = 4711, .state = kRunning},
      {.rank = 1, .pid = 4712, .state = kAbortedBySignal},
      {.rank = 2, .pid = 4713, .state = kExitedNonZero, .exit_code = 3},
  };
  EXPECT_EQ(RuntimeSaysEnded(table, 0, 4711), std::nullopt) << "it runs";
  EXPECT_THAT(RuntimeSaysEnded(table, 1, 4712),
              Optional(Eq("the MPI runtime says it was killed by a signal")))
      << "Open MPI 4.1 does not say which";
  EXPECT_THAT(RuntimeSaysEnded(table, 2, 4713),
              Optional(Eq("the MPI runtime says it exited with status 3")));
}

TEST(RuntimeSaysEndedTest, AnEntryOfAnotherPidOrRankSaysNothing) {
  // A daemon other than the head node's shows other hosts' processes with pid 0 and a launch
  // state for good; a later process of the rank has another pid.
  const std::vector<RuntimeProcess> table = {
      {.rank = 0, .pid = 0, .state = 2},
      {.rank = 1, .pid = 999, .state = kAbortedBySignal, .exit_code = 137},
  };
  EXPECT_EQ(RuntimeSaysEnded(table, 0, 4711), std::nullopt);
  EXPECT_EQ(RuntimeSaysEnded(table, 1, 4712), std::nullopt);
  EXPECT_EQ(RuntimeSaysEnded(table, 5, 999), std::nullopt);
  EXPECT_EQ(RuntimeSaysEnded({}, 0, 0), std::nullopt) << "a worker without a pid matches nothing";
}

TEST(RuntimeSaysEndedTest, EveryStateAboveTheBoundaryIsAnEnd) {
  for (uint32_t state = 16; state < 70; ++state) {
    const std::vector<RuntimeProcess> table = {{.rank = 0, .pid = 7, .state = state}};
    EXPECT_NE(RuntimeSaysEnded(table, 0, 7), std::nullopt) << "state " << state;
  }
  for (uint32_t state = 0; state <= 15; ++state) {
    const std::vector<RuntimeProcess> table = {{.rank = 0, .pid = 7, .state = state}};
    EXPECT_EQ(RuntimeSaysEnded(table, 0, 7), std::nullopt) << "state " << state;
  }
}

}  // namespace
}  // namespace mpigate::server
