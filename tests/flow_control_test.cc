// End-to-end tests of how much one client can make the pool hold or wait for, on a real
// mpigate-server with 2 workers:
//   - a burst of echoes too large for the worker<->task runner socket to hold at once finishes
//     (each side of that socket once blocked writing while the other did, and the pool hung);
//   - a range task whose result outgrows the message limit fails with RESOURCE_EXHAUSTED as soon
//     as it does, and no process holds much more than the limit meanwhile.
#include <dirent.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// How long the whole burst may take; far more than it needs (seconds), so that only a pool that
// has stopped fails it.
constexpr absl::Duration kBurstDeadline = absl::Seconds(120);

std::string RandomBytes(size_t size, std::mt19937_64& random) {
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random());
  return bytes;
}

class FlowControlTest : public ::testing::TestWithParam<size_t> {};

// One client, 2,000 echoes submitted in one loop, as Python's
// `[ex.submit("echo", os.urandom(4096)) for _ in range(2000)]`: the payloads and results go
// through the gRPC stream, MPI and the worker<->runner socket (shared memory is off for them).
TEST_P(FlowControlTest, ABurstOfEchoesFromOneClientFinishesWithTheRightBytes) {
  constexpr int kTasks = 2000;
  const size_t payload_bytes = GetParam();
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(),
                           .client_name = "burst",
                           .shared_memory_min_bytes = 2 * payload_bytes});
    ASSERT_TRUE(executor.ok()) << executor.status();
    std::mt19937_64 random(payload_bytes);
    std::vector<std::string> payloads;
    std::vector<Future> futures;
    for (int i = 0; i < kTasks; ++i) {
      payloads.push_back(RandomBytes(payload_bytes, random));
      futures.push_back((*executor)->Submit("echo", payloads.back()));
    }
    const absl::Time deadline = absl::Now() + kBurstDeadline;
    int finished = 0;
    for (const Future& future : futures) {
      if (!future.Wait(deadline - absl::Now())) break;
      ++finished;
    }
    // A stopped pool would hold a waiting shutdown for ever.
    if (finished < kTasks) (*executor)->Shutdown(/*wait=*/false, /*cancel_futures=*/true);
    ASSERT_EQ(finished, kTasks) << "the pool stopped: only " << finished << " of " << kTasks
                                << " echoes of " << payload_bytes << " bytes finished in "
                                << kBurstDeadline;
    for (int i = 0; i < kTasks; ++i) {
      absl::StatusOr<std::string> result = futures[i].Result();
      ASSERT_TRUE(result.ok()) << "task " << i << ": " << result.status();
      ASSERT_TRUE(*result == payloads[i]) << "task " << i << " came back with other bytes";
    }
    (*executor)->Shutdown();
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

INSTANTIATE_TEST_SUITE_P(PayloadSizes, FlowControlTest, ::testing::Values(4 << 10, 64 << 10),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return absl::StrCat(info.param >> 10, "KiB");
                         });

// 2^20 items of 512 bytes: half a GiB of results from one task, under a limit of 64 MiB.
TEST(ResultLimitTest, ARangeWhoseResultOutgrowsTheLimitStopsThereAndNoProcessHoldsMuchMore) {
  constexpr int kLimitMb = 64;
  constexpr int64_t kBound = 3 * (int64_t{kLimitMb} << 20);
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {absl::StrCat("--max_message_mb=", kLimitMb)}}).ok());
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(
        {.endpoint = server.target(), .client_name = "range", .max_message_bytes = kLimitMb << 20});
    ASSERT_TRUE(executor.ok()) << executor.status();
    MapResults results = (*executor)->MapRange("echo", std::string(512, 'p'),
                                               {.count = uint64_t{1} << 20, .batch_size = 1 << 20});
    auto first = results.begin();
    ASSERT_NE(first, results.end());
    const absl::StatusOr<std::string>& outcome = *first;
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kResourceExhausted) << outcome.status();
    EXPECT_THAT(outcome.status().message(),
                AllOf(HasSubstr(absl::StrCat((kLimitMb << 20) - 64, " bytes")),
                      HasSubstr("--max_message_mb")));

    std::vector<pid_t> processes = server.WorkerPids();
    const std::vector<pid_t> runners =
        testing::DescendantsNamed(server.pool_root(), "mpigate-runner");
    EXPECT_EQ(processes.size(), 2u);
    EXPECT_EQ(runners.size(), 2u);
    processes.insert(processes.end(), runners.begin(), runners.end());
    processes.push_back(server.pid());
    for (const pid_t pid : processes) {
      const absl::StatusOr<uint64_t> peak_read = testing::PeakResidentBytes(pid);
      ASSERT_TRUE(peak_read.ok()) << peak_read.status();
      const uint64_t peak = *peak_read;
      std::cout << "peak RSS of process " << pid << ": " << (peak >> 20) << " MiB" << std::endl;
      EXPECT_LT(peak, kBound) << "process " << pid << " held " << (peak >> 20)
                              << " MiB at its peak, more than 3 times the limit of " << kLimitMb
                              << " MiB";
    }
    (*executor)->Shutdown();
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

}  // namespace
}  // namespace mpigate
