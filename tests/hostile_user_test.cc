// A hostile local user on the pool's host, end to end: a real mpigate-server run as root and a
// process of user `nobody` (tests/hostile_user.cc) that does what any local user can. It plants
// shared memory objects under every name of the service it can predict or see, and must never be
// handed a byte of a payload or result; it tries to ring the workers' doorbells, and must neither
// reach them nor keep the workers busy with a flood. Needs root to become nobody: skipped
// otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process_info.h"
#include "tests/server_process.h"

extern char** environ;

namespace mpigate {
namespace {

using ::testing::StartsWith;

constexpr absl::Duration kPatience = absl::Minutes(2);

// tests/hostile_user, running as nobody, driven one line at a time.
class HostileUser {
 public:
  HostileUser() {
    int to_child[2];
    int from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    const std::string path = testing::RunfilePath("tests/hostile_user");
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    if (posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv, environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
  }

  ~HostileUser() { End(); }

  // Ends its input, so that it removes what it planted and exits, and waits for it: before the
  // server stops, which waits for every child of the test.
  void End() {
    if (to_ != nullptr) fclose(to_);
    to_ = nullptr;
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (from_ != nullptr) fclose(from_);
    from_ = nullptr;
  }

  // Sends `command`; returns the answer line, or "" if the process is gone.
  std::string Ask(const std::string& command) {
    if (to_ == nullptr || from_ == nullptr) return "";
    fprintf(to_, "%s\n", command.c_str());
    fflush(to_);
    char* line = nullptr;
    size_t size = 0;
    const ssize_t length = getline(&line, &size, from_);
    std::string answer = length > 0 ? std::string(line, static_cast<size_t>(length) - 1) : "";
    free(line);
    return answer;
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// Bytes that differ from position to position, so that a misplaced or truncated copy shows.
std::string Pattern(size_t size, int seed) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + seed) % 251);
  return bytes;
}

// How every object name of the gateway with pid `pid` starts: "mpigate-<pid namespace>-<pid>-".
std::string GatewayNameStart(pid_t pid) {
  struct stat ns;
  if (stat("/proc/self/ns/pid", &ns) != 0) return "";
  return absl::StrCat("mpigate-", ns.st_ino, "-", pid, "-");
}

// Every address a local user could try to ring `workers`' doorbells at: the abstract names they
// once had, and every Unix socket path of theirs /proc/net/unix shows.
std::vector<std::string> DoorbellCandidates(const std::vector<pid_t>& workers) {
  std::vector<std::string> candidates;
  for (const pid_t worker : workers)
    candidates.push_back(absl::StrCat("@mpigate-doorbell-", worker));
  std::ifstream unix_sockets("/proc/net/unix");
  std::string line;
  while (std::getline(unix_sockets, line)) {
    const std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() == 8 && absl::StrContains(fields[7], "mpigate-doorbell") &&
        !absl::StartsWith(fields[7], "@")) {
      candidates.push_back(fields[7]);
    }
  }
  return candidates;
}

class HostileUserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "playing the other local user (nobody) takes root";
  }
};

TEST_F(HostileUserTest, SharedMemoryObjectsOfAnotherUserAreNeverWrittenNorRead) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  HostileUser nobody;
  const std::string start = GatewayNameStart(server.pid());
  ASSERT_FALSE(start.empty());
  // Every name a local user could predict from the gateway's pid alone.
  EXPECT_EQ(nobody.Ask(absl::StrCat("plant-parked ", start)), "planted 32");
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "root"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    const std::vector<size_t> sizes = {64 << 10, 100 << 10, 1 << 20, 3 << 20, 8 << 20};
    for (int round = 0; round < 4; ++round) {
      if (round == 2) {
        // By now the service has parked objects, whose names show its secret prefix to anyone
        // who lists /dev/shm: the hostile user plants the parked names of that prefix too.
        const std::string planted = nobody.Ask(absl::StrCat("watch ", start));
        EXPECT_THAT(planted, StartsWith("planted "));
        std::cerr << "after round 2 the hostile user " << planted << "\n";
      }
      std::vector<std::string> inputs;
      std::vector<Future> futures;
      for (size_t i = 0; i < sizes.size(); ++i) {
        inputs.push_back(Pattern(sizes[i], round * 10 + static_cast<int>(i)));
        futures.push_back((*executor)->Submit("echo", inputs.back()));
      }
      for (size_t i = 0; i < futures.size(); ++i) {
        absl::StatusOr<std::string> result = futures[i].Result(kPatience);
        ASSERT_TRUE(result.ok()) << result.status();
        EXPECT_TRUE(*result == inputs[i]) << "round " << round << ", " << sizes[i] << " bytes";
      }
    }
  }
  // Neither the client nor a task runner ever wrote into (or took over) an object of nobody's.
  EXPECT_THAT(nobody.Ask("check"), StartsWith("intact "));
  nobody.End();
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

TEST_F(HostileUserTest, AnotherUserCanNeitherRingNorFloodTheWorkersDoorbells) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2}).ok());
  const std::vector<pid_t> workers = server.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  const std::vector<std::string> candidates = DoorbellCandidates(workers);
  // The abstract names doorbells had, and whatever socket paths the workers have.
  ASSERT_GE(candidates.size(), workers.size()) << absl::StrJoin(candidates, " ");
  HostileUser nobody;
  for (const std::string& address : candidates) {
    EXPECT_THAT(nobody.Ask(absl::StrCat("ring ", address)), StartsWith("refused ")) << address;
  }
  // A flood of 3 s. An idle worker whose doorbell does not ring wakes every 200 ms and uses next to
  // no CPU (0 ticks here): 50 ms each (1.7% of a core, over ten times the idle pool's 0.1-0.2%)
  // is a generous bound. Workers that heard the flood used 12-13 ticks each on this 2-core machine
  // at a load of 11, and 90% of a core on an idle one.
  std::vector<uint64_t> before;
  for (const pid_t worker : workers) {
    const absl::StatusOr<uint64_t> ticks = testing::CpuTicks(worker);
    ASSERT_TRUE(ticks.ok()) << ticks.status();
    before.push_back(*ticks);
  }
  const std::string flood = nobody.Ask(absl::StrCat("flood 3000 ", absl::StrJoin(candidates, " ")));
  std::cerr << "flood: " << flood << "\n";
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  for (size_t i = 0; i < workers.size(); ++i) {
    const absl::StatusOr<uint64_t> ticks = testing::CpuTicks(workers[i]);
    ASSERT_TRUE(ticks.ok()) << ticks.status();
    const uint64_t used = *ticks - before[i];
    std::cerr << "worker " << workers[i] << " used " << used << " ticks during the flood\n";
    EXPECT_LT(used, static_cast<uint64_t>(ticks_per_second / 20)) << "worker " << workers[i];
  }
  nobody.End();
  // The gateway still rings them.
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "root"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    EXPECT_EQ((*executor)->Submit("echo", "still here").Result(kPatience).value_or(""),
              "still here");
  }
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

}  // namespace
}  // namespace mpigate
