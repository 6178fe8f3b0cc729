#include "tests/resume_client_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/server_process.h"

extern char** environ;

namespace mpigate::testing {
namespace {

// Takes one line of resume_client's output into `client`.
void TakeLine(const std::string& line, KilledClient& client) {
  std::vector<std::string> words = absl::StrSplit(line, absl::MaxSplits(' ', 2));
  uint64_t id = 0;
  if (words[0] == "submitted") {
    client.submitted = true;
  } else if (words[0] == "token" && words.size() > 1) {
    client.token = absl::HexStringToBytes(words[1]);
  } else if (words[0] == "done" && words.size() > 1 && absl::SimpleAtoi(words[1], &id)) {
    if (!client.recorded.emplace(id, words.size() > 2 ? words[2] : "").second) {
      ++client.duplicates;
    }
  }
}

// Reads lines from `fd` into `client` until it has submitted every task and recorded `until`
// results, or the pipe ends.
void ReadLines(int fd, size_t until, std::string& partial, KilledClient& client) {
  char c;
  while ((!client.submitted || client.recorded.size() < until) && read(fd, &c, 1) == 1) {
    if (c != '\n') {
      partial.push_back(c);
      continue;
    }
    TakeLine(partial, client);
    partial.clear();
  }
}

}  // namespace

absl::StatusOr<KilledClient> RunAndKillResumeClient(const std::string& target, int tasks,
                                                    size_t kill_after) {
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  const std::string binary = RunfilePath("tests/resume_client");
  const std::string task_count = absl::StrCat(tasks);
  const char* argv[] = {binary.c_str(), target.c_str(), task_count.c_str(), nullptr};
  pid_t pid = -1;
  const int spawned =
      posix_spawn(&pid, argv[0], &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  if (spawned != 0) {
    close(out_pipe[0]);
    return absl::InternalError(absl::StrCat("cannot start ", binary));
  }
  KilledClient client;
  std::string partial;
  ReadLines(out_pipe[0], kill_after, partial, client);
  kill(pid, SIGKILL);
  int wait_status = 0;
  waitpid(pid, &wait_status, 0);
  // Lines it wrote before dying count too: it recorded those results.
  ReadLines(out_pipe[0], SIZE_MAX, partial, client);
  close(out_pipe[0]);
  if (!WIFSIGNALED(wait_status) || WTERMSIG(wait_status) != SIGKILL) {
    return absl::InternalError("resume_client ended before it was killed");
  }
  if (client.token.empty()) return absl::InternalError("resume_client printed no token");
  return client;
}

std::string ResumeClientResult(uint64_t id) {
  return id % 50 == 0 ? "" : absl::StrCat("task ", id);
}

}  // namespace mpigate::testing
