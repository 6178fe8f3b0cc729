// ProcessTable: jobs, process states and who serves which worker, without MPI (communicators are
// only compared, never used).
#include "server/process_table.h"

#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(ProcessTableTest, AJobBootsOneProcessPerWorkerAndBecomesTheTarget) {
  ProcessTable table(/*workers=*/3, /*rank_offset=*/0);
  EXPECT_EQ(table.target(), -1);
  EXPECT_EQ(table.WorkersDown(), 3);
  EXPECT_EQ(table.AddCohort(MPI_COMM_SELF, kStart), 0);
  EXPECT_EQ(table.target(), 0);
  EXPECT_EQ(table.process_count(), 3);
  EXPECT_EQ(table.awaiting(), 3);
  EXPECT_FALSE(table.cohort(0).replacement);
  EXPECT_EQ(table.cohort(0).live, 3);
  EXPECT_TRUE(table.unsettled());
  for (int id = 0; id < 3; ++id) {
    EXPECT_EQ(table.process(id).state, Process::State::kBooting);
    EXPECT_EQ(table.process(id).index, id);
    EXPECT_EQ(table.process(id).spawned, kStart);
  }
}

TEST(ProcessTableTest, StatesKeepAwaitingAndLiveCounts) {
  ProcessTable table(2, 0);
  table.AddCohort(MPI_COMM_SELF, kStart);
  table.SetState(table.process(0), Process::State::kUp);
  EXPECT_EQ(table.awaiting(), 1);
  table.SetState(table.process(0), Process::State::kStopping);
  EXPECT_EQ(table.awaiting(), 2);
  EXPECT_EQ(table.Stopping(), 1);
  table.SetState(table.process(0), Process::State::kGone);
  table.SetState(table.process(0), Process::State::kGone);
  EXPECT_EQ(table.awaiting(), 1);
  EXPECT_EQ(table.cohort(0).live, 1) << "gone twice counts once";
}

TEST(ProcessTableTest, AJobThatIsOverLeavesItsSlotToTheNextWithANewGeneration) {
  ProcessTable table(2, 0);
  table.AddCohort(MPI_COMM_SELF, kStart);
  const uint64_t first_id = table.WatchId(1);
  // A replacement while the first job still has processes: a new slot.
  EXPECT_EQ(table.AddCohort(MPI_COMM_SELF, kStart), 1);
  EXPECT_TRUE(table.cohort(1).replacement);
  EXPECT_EQ(table.cohort(1).first_process, 2);
  for (int id = 0; id < 2; ++id) table.SetState(table.process(id), Process::State::kGone);
  // The first job is over, but its communicator is still connected and it lost nothing: kept.
  EXPECT_EQ(table.AddCohort(MPI_COMM_SELF, kStart), 2);
  table.cohort(0).broken = true;
  EXPECT_EQ(table.AddCohort(MPI_COMM_SELF, kStart), 0) << "over and never to be disconnected";
  EXPECT_EQ(table.process_count(), 6);
  EXPECT_EQ(table.process(1).generation, 2u);
  EXPECT_EQ(table.ProcessOfWatchId(first_id), -1) << "a late report of the slot's last process";
  EXPECT_EQ(table.ProcessOfWatchId(table.WatchId(1)), 1);
  EXPECT_EQ(table.ProcessOfWatchId(table.WatchId(5)), 5);
  EXPECT_EQ(table.ProcessOfWatchId(uint64_t{1} << 32 | 99), -1);
}

TEST(ProcessTableTest, ServingAWorkerAndItsTasksInFlight) {
  ProcessTable table(2, /*rank_offset=*/1);
  table.AddCohort(MPI_COMM_SELF, kStart);
  EXPECT_EQ(table.ProcessOf(0), nullptr);
  const uint64_t before = table.changes();
  table.Serve(0, 0);
  table.Serve(1, 1);
  EXPECT_GT(table.changes(), before);
  EXPECT_EQ(table.WorkersDown(), 0);
  Process& process = *table.ProcessOf(1);
  EXPECT_EQ(table.RankOf(process), 2);
  EXPECT_EQ(table.ProcessAt(0, 2), 1);
  table.Sent(process);
  table.Sent(process);
  table.Sent(*table.ProcessOf(0));
  table.Answered(process);
  EXPECT_EQ(table.in_flight(), 2);
  table.DropInFlight(process);
  EXPECT_EQ(table.in_flight(), 1);
  EXPECT_EQ(process.in_flight, 0);
  table.Serve(1, -1);
  EXPECT_EQ(table.WorkersDown(), 1);
}

TEST(ProcessTableTest, YoungestUpAndKilledProcesses) {
  ProcessTable table(2, 0);
  table.AddCohort(MPI_COMM_SELF, kStart);
  table.process(0).up_since = kStart + absl::Seconds(1);
  table.process(1).up_since = kStart + absl::Seconds(2);
  table.Serve(0, 0);
  EXPECT_EQ(table.YoungestUp(), kStart + absl::Seconds(1));
  table.Serve(1, 1);
  EXPECT_EQ(table.YoungestUp(), kStart + absl::Seconds(2));
  EXPECT_FALSE(table.KilledStillEnding());
  table.process(1).killed_because = "its gang lost worker 0";
  EXPECT_TRUE(table.KilledStillEnding());
  table.SetState(table.process(1), Process::State::kGone);
  EXPECT_FALSE(table.KilledStillEnding());
}

TEST(ProcessTableTest, AbortGoesThroughTheTargetElseAConnectedJob) {
  ProcessTable table(1, 0);
  EXPECT_EQ(table.AbortComm(), MPI_COMM_WORLD);
  table.AddCohort(MPI_COMM_SELF, kStart);
  EXPECT_EQ(table.AbortComm(), MPI_COMM_SELF);
  table.AddCohort(MPI_COMM_NULL, kStart);
  EXPECT_EQ(table.AbortComm(), MPI_COMM_SELF) << "the target's communicator is null";
}

TEST(ProcessTableTest, DescribeNamesTheWorkerOrTheSlot) {
  Process process;
  process.index = 3;
  process.hello.set_host("node2");
  process.hello.set_pid(42);
  EXPECT_EQ(ProcessTable::Describe(process), "replacement process for worker 3 on node2 (pid 42)");
  process.worker = 3;
  EXPECT_EQ(ProcessTable::Describe(process), "worker 3 on node2 (pid 42)");
}

}  // namespace
}  // namespace mpigate::server
