#include "server/abort_reaper.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mpigate::server {
namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// This process's children: each thread's /proc/self/task/TID/children names those it started.
std::vector<pid_t> ChildProcesses() {
  std::vector<pid_t> children;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return children;
  while (const dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream file(absl::StrCat("/proc/self/task/", entry->d_name, "/children"));
    std::string line;
    std::getline(file, line);
    for (const absl::string_view word : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      pid_t pid = 0;
      if (absl::SimpleAtoi(word, &pid)) children.push_back(pid);
    }
  }
  closedir(tasks);
  return children;
}

int64_t MonotonicMilliseconds() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

// Appends `text` at `out`; returns the end. Async-signal-safe.
char* AppendText(char* out, const char* text) {
  const size_t length = std::strlen(text);
  std::memcpy(out, text, length);
  return out + length;
}

// Appends the decimal digits of `value` at `out`; returns the end. Async-signal-safe.
char* AppendNumber(char* out, int64_t value) {
  char digits[24];
  int count = 0;
  do {
    digits[count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  while (count > 0) *out++ = digits[--count];
  return out;
}

// Waits until each of `fds` has ended (its descriptor is set to -1 then: poll skips it) or the
// monotonic clock reaches `deadline` (milliseconds); returns how many have not ended.
size_t AwaitEnds(pollfd* fds, size_t count, int64_t deadline) {
  size_t left = count;
  while (left > 0) {
    const int64_t wait = deadline - MonotonicMilliseconds();
    if (wait <= 0) break;
    if (poll(fds, count, static_cast<int>(wait)) < 0 && errno != EINTR) break;
    for (size_t i = 0; i < count; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & POLLIN) != 0) {
        fds[i].fd = -1;
        --left;
      }
    }
  }
  return left;
}

// The reaper's whole life, in the forked child: only async-signal-safe calls. `watched[0]` is the
// gateway's pidfd, the rest those of the processes to reap; `pids` their pids, for the message;
// `keep` every one of those descriptors and stderr, ascending.
[[noreturn]] void Reap(pollfd* watched, const pid_t* pids, size_t count, const int* keep,
                       size_t keep_count, int64_t patience_ms) {
  // The gateway's stop signals are its own: this process ends by them as any other would.
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  // Hold nothing of the gateway's open (its listening socket, its clients' connections).
  int next = 0;
  for (size_t i = 0; i < keep_count; ++i) {
    if (keep[i] > next) syscall(SYS_close_range, next, keep[i] - 1, 0);
    next = keep[i] + 1;
  }
  syscall(SYS_close_range, next, ~0U, 0);

  // MPI_Abort ends the gateway, unless the daemon it asks never answers (MPI_Abort waits for it):
  // then the gateway is killed first, and the others are given their patience after that.
  const int gateway = watched[0].fd;
  const bool gateway_killed = AwaitEnds(watched, 1, MonotonicMilliseconds() + patience_ms) > 0;
  if (gateway_killed) {
    syscall(SYS_pidfd_send_signal, gateway, SIGKILL, nullptr, 0);
    AwaitEnds(watched, 1, MonotonicMilliseconds() + patience_ms);
  }
  if (AwaitEnds(watched + 1, count - 1, MonotonicMilliseconds() + patience_ms) == 0 &&
      !gateway_killed) {
    _exit(0);
  }
  static constexpr char kKilled[] = "mpigate-server: still there after the abort, killed:";
  char message[sizeof(kKilled) + 65 * 24];
  char* out = AppendText(message, kKilled);
  if (gateway_killed) {
    out = AppendText(out, " the gateway, pid ");
    out = AppendNumber(out, pids[0]);
    out = AppendText(out, ";");
  }
  int named = 0;
  for (size_t i = 1; i < count; ++i) {
    if (watched[i].fd < 0) continue;
    syscall(SYS_pidfd_send_signal, watched[i].fd, SIGKILL, nullptr, 0);
    if (named++ < 64) {
      *out++ = ' ';
      out = AppendNumber(out, pids[i]);
    }
  }
  *out++ = '\n';
  const ssize_t written = write(STDERR_FILENO, message, static_cast<size_t>(out - message));
  _exit(written < 0 ? 1 : 0);
}

}  // namespace

absl::Status StartAbortReaper(const std::vector<pid_t>& processes, absl::Duration patience) {
  std::vector<pid_t> pids = {getpid()};
  pids.insert(pids.end(), processes.begin(), processes.end());
  for (const pid_t child : ChildProcesses()) {
    if (std::find(pids.begin(), pids.end(), child) == pids.end()) pids.push_back(child);
  }
  std::vector<pollfd> watched;
  std::vector<pid_t> watched_pids;
  std::vector<int> keep = {STDERR_FILENO};
  for (const pid_t pid : pids) {
    const int fd = PidfdOpen(pid);
    if (fd < 0 && pid == pids.front()) {
      return absl::UnavailableError(
          absl::StrCat("pidfd_open of this process: ", std::strerror(errno)));
    }
    if (fd < 0) continue;  // gone already
    watched.push_back(pollfd{fd, POLLIN, 0});
    watched_pids.push_back(pid);
    keep.push_back(fd);
  }
  std::sort(keep.begin(), keep.end());
  const pid_t reaper = fork();
  if (reaper == 0) {
    Reap(watched.data(), watched_pids.data(), watched.size(), keep.data(), keep.size(),
         absl::ToInt64Milliseconds(patience));
  }
  const int fork_errno = errno;
  for (const pollfd& fd : watched) close(fd.fd);
  if (reaper < 0) {
    return absl::UnavailableError(absl::StrCat("fork: ", std::strerror(fork_errno)));
  }
  return absl::OkStatus();
}

}  // namespace mpigate::server
