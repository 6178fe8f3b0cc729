// End to end: `mpigate serve` becomes a real mpigate-server, `mpigate status` sees it and
// `mpigate shutdown` stops it, leaving no process behind; and serve's own failures.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/cli_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using testing::CliResult;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::RunMpigate;

std::string ReadFile(const std::string& path) {
  std::string text;
  if (FILE* file = std::fopen(path.c_str(), "r"); file != nullptr) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
    std::fclose(file);
  }
  return text;
}

// Reads `fd` up to and including the first line containing `needle`; false at end of file.
bool ReadLineWith(int fd, absl::string_view needle, std::string& seen) {
  std::string line;
  char c;
  while (read(fd, &c, 1) == 1) {
    line.push_back(c);
    if (c != '\n') continue;
    seen += line;
    if (absl::StrContains(line, needle)) return true;
    line.clear();
  }
  return false;
}

TEST(ServeTest, ServeBecomesTheServerAndShutdownStopsIt) {
  // Descendants the server leaves (Open MPI's daemon, workers) become ours, to be waited for.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  char dir_template[] = "/tmp/mpigate-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string target = absl::StrCat("unix:", dir, "/s.sock");
  const std::string stderr_path = absl::StrCat(dir, "/stderr");

  std::vector<std::string> args = {testing::MpigateBinary(), "serve", "--workers=1",
                                   absl::StrCat("--listen=", target),
                                   absl::StrCat("--endpoint-file=", dir, "/endpoint")};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out_pipe[2];
  ASSERT_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> env_strings = testing::ChildEnvironment({});
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);

  std::string seen;
  const bool ready = ReadLineWith(out_pipe[0], "mpigate-server: ready", seen);
  ASSERT_TRUE(ready) << seen << ReadFile(stderr_path);
  // serve execs the server: the server's pid is the one this test started.
  EXPECT_THAT(seen, HasSubstr(absl::StrCat(", pid ", pid, "\n")));

  absl::StatusOr<CliResult> status = RunMpigate({"status", absl::StrCat("--endpoint=", target)});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->exit_code, 0) << status->stderr_text;
  EXPECT_THAT(status->stdout_text, AllOf(HasSubstr("\nstate      READY\n"),
                                         HasSubstr("\nworkers    1: 0 busy, 1 idle\n")));

  absl::StatusOr<CliResult> shutdown =
      RunMpigate({"shutdown", "--reason", "cli serve test", absl::StrCat("--endpoint=", target)});
  ASSERT_TRUE(shutdown.ok()) << shutdown.status();
  EXPECT_EQ(shutdown->exit_code, 0) << shutdown->stderr_text;
  EXPECT_EQ(shutdown->stderr_text,
            absl::StrCat("mpigate: the service at ", target, " is draining and will exit\n"));
  EXPECT_THAT(shutdown->stdout_text, IsEmpty());

  int wait_status = 0;
  ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
  ASSERT_TRUE(WIFEXITED(wait_status));
  const std::string server_log = ReadFile(stderr_path);
  EXPECT_EQ(WEXITSTATUS(wait_status), 0) << server_log;
  EXPECT_THAT(server_log,
              AllOf(HasSubstr("stopping (cli serve test)"), HasSubstr("stopped cleanly")));
  close(out_pipe[0]);
  // Every descendant ends by itself; a leftover would hang here until the test's time limit.
  while (waitpid(-1, &wait_status, 0) > 0) {
  }
  EXPECT_EQ(errno, ECHILD);

  // Stopped: nothing answers any more.
  shutdown = RunMpigate({"shutdown", absl::StrCat("--endpoint=", target)});
  ASSERT_TRUE(shutdown.ok()) << shutdown.status();
  EXPECT_EQ(shutdown->exit_code, 3);
  EXPECT_THAT(shutdown->stderr_text, HasSubstr("UNAVAILABLE"));

  std::remove(stderr_path.c_str());
  rmdir(dir.c_str());
}

TEST(ServeTest, FlagsAfterServeAreTheServers) {
  // The server refuses a flag it does not know, as itself: proof that serve passed it on.
  absl::StatusOr<CliResult> run = RunMpigate({"serve", "--no-such-server-flag=1"});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_NE(run->exit_code, 0);
  EXPECT_THAT(run->stderr_text, HasSubstr("Unknown command line flag 'no_such_server_flag'"));
  EXPECT_THAT(run->stderr_text, Not(HasSubstr("mpigate: serve:")));
}

TEST(ServeTest, MissingServerBinaryExitsFour) {
  absl::StatusOr<CliResult> run =
      RunMpigate({"serve"}, {.env = {{"MPIGATE_SERVER", "/nonexistent/mpigate-server"}}});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 4);
  EXPECT_EQ(run->stderr_text,
            "mpigate: serve: NOT_FOUND: $MPIGATE_SERVER=/nonexistent/mpigate-server is not "
            "executable\n");
}

}  // namespace
}  // namespace mpigate
