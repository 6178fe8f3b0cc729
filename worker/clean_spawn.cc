#include "worker/clean_spawn.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace mpigate::worker {
namespace {

// Whether process `pid` is alive (not a zombie) in session `session`, from /proc/PID/stat:
// "PID (COMM) STATE PPID PGRP SESSION ...", where COMM may hold spaces and parentheses.
bool AliveInSession(pid_t pid, pid_t session) {
  const std::string path = absl::StrCat("/proc/", pid, "/stat");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[512];
  const ssize_t got = read(fd, buffer, sizeof(buffer) - 1);
  close(fd);
  if (got <= 0) return false;
  const absl::string_view stat(buffer, static_cast<size_t>(got));
  const size_t comm_end = stat.rfind(')');
  if (comm_end == absl::string_view::npos) return false;
  const std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(comm_end + 1), ' ', absl::SkipEmpty());
  pid_t in_session = 0;
  if (fields.size() < 4 || !absl::SimpleAtoi(fields[3], &in_session)) return false;
  return in_session == session && fields[0] != "Z" && fields[0] != "X";
}

}  // namespace

absl::Status SetCleanSpawnAttributes(posix_spawnattr_t& attributes, SpawnGroup group) {
  sigset_t no_signals;
  sigset_t all_signals;
  sigemptyset(&no_signals);
  sigfillset(&all_signals);
  const short where = group == SpawnGroup::kSession ? POSIX_SPAWN_SETSID : POSIX_SPAWN_SETPGROUP;
  int error =
      posix_spawnattr_setflags(&attributes, where | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (error == 0 && group == SpawnGroup::kProcessGroup) {
    error = posix_spawnattr_setpgroup(&attributes, 0);
  }
  if (error == 0) error = posix_spawnattr_setsigmask(&attributes, &no_signals);
  if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &all_signals);
  if (error != 0) return absl::ErrnoToStatus(error, "posix_spawnattr");
  return absl::OkStatus();
}

bool KillSession(pid_t session, absl::Duration patience) {
  // Again until a pass finds no one alive: a member may fork while the scan runs, and one killed
  // may take a moment to die (or longer, stuck in the kernel, e.g. on a dead NFS server).
  const absl::Time deadline = absl::Now() + patience;
  while (true) {
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return false;
    bool found = false;
    while (const dirent* entry = readdir(proc)) {
      pid_t pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid) || !AliveInSession(pid, session)) continue;
      kill(pid, SIGKILL);
      found = true;
    }
    closedir(proc);
    if (!found) return true;
    if (absl::Now() > deadline) return false;
    sched_yield();
  }
}

}  // namespace mpigate::worker
