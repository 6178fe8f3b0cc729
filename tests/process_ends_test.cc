// How a lost worker process ended, and whether its parent has reaped it, against a real child.
#include "server/process_ends.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wire/doorbell.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;

TEST(ProcessEndsTest, WhatWasHeardWinsThenTheDeathNoteThenTheKillThenNoWord) {
  char dir_template[] = "/tmp/process-ends-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string doorbell = std::string(dir_template) + "/doorbell";
  EXPECT_EQ(HowProcessEnded("it sent no heartbeat", doorbell, "killed"), "it sent no heartbeat");
  EXPECT_EQ(HowProcessEnded("", doorbell, "killed by the gateway"), "killed by the gateway");
  EXPECT_THAT(HowProcessEnded("", "", ""), HasSubstr("ended without a word"));
  std::ofstream(wire::DeathNotePath(doorbell)) << "killed by signal 6 (SIGABRT)";
  EXPECT_EQ(HowProcessEnded("", doorbell, "killed by the gateway"), "killed by signal 6 (SIGABRT)");
  EXPECT_EQ(HowProcessEnded("", doorbell, ""), HowProcessEnded("", "", ""))
      << "a note is read once: it was removed";
  rmdir(dir_template);
}

TEST(ProcessEndsTest, AZombieIsNotReapedUntilItsParentWaits) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Waits until it has ended, leaving it a zombie.
  siginfo_t info;
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(Reaped(child));
  UnreapedEnds ends;
  const absl::Time now = absl::Now();
  ends.Add(child, now);
  EXPECT_FALSE(ends.AllReaped(now));
  EXPECT_TRUE(ends.AllReaped(now + UnreapedEnds::kPatience + absl::Milliseconds(1)))
      << "patience ran out";
  ends.Add(child, now);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(Reaped(child));
  EXPECT_TRUE(ends.AllReaped(now));
  EXPECT_TRUE(ends.empty());
}

}  // namespace
}  // namespace mpigate::server
