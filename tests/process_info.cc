#include "tests/process_info.h"

#include <dirent.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mpigate::testing {
namespace {

struct Stat {
  std::string name;
  // The fields after the name: [0] is the state, [1] the parent's pid, [11] and [12] the user and
  // system CPU ticks.
  std::vector<std::string> fields;
};

// /proc/PID/stat: "pid (name) state ppid ...", where the name may hold spaces and parentheses, so
// it ends at the last ')'.
absl::StatusOr<Stat> ReadStat(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/stat");
  std::ifstream file(path);
  // One line. Read with getline, which turns a read error into a failed stream: a process reaped
  // between the open and the read makes read(2) fail (ESRCH), and libstdc++'s filebuf throws
  // that through an istreambuf_iterator (chaos_test ended in std::terminate so, killing runners).
  std::string text;
  std::getline(file, text);
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 > text.size()) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  Stat stat;
  stat.name = text.substr(open + 1, close - open - 1);
  stat.fields = absl::StrSplit(text.substr(close + 2), ' ', absl::SkipEmpty());
  return stat;
}

// The first line of a /proc file, empty if it cannot be read.
std::string FirstLine(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// The value of a "Name:   123 kB" line of /proc/PID/status, in bytes.
absl::StatusOr<uint64_t> StatusKilobytes(pid_t pid, absl::string_view field) {
  const std::string path = absl::StrCat("/proc/", pid, "/status");
  std::ifstream status(path);
  if (!status) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  const std::string prefix = absl::StrCat(field, ":");
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    uint64_t kilobytes = 0;
    if (!absl::SimpleAtoi(rest, &kilobytes)) {
      return absl::InternalError(absl::StrCat("cannot parse ", path, ": ", line));
    }
    return kilobytes << 10;
  }
  return absl::NotFoundError(absl::StrCat(path, " has no ", field));
}

}  // namespace

std::vector<pid_t> ProcessTree(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return {root};
  while (const dirent* entry = readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    absl::StatusOr<Stat> stat = ReadStat(pid);
    pid_t parent = 0;
    if (stat.ok() && stat->fields.size() >= 2 && absl::SimpleAtoi(stat->fields[1], &parent)) {
      children[parent].push_back(pid);
    }
  }
  closedir(proc);
  std::vector<pid_t> tree = {root};
  for (size_t i = 0; i < tree.size(); ++i) {
    const auto it = children.find(tree[i]);
    if (it != children.end()) tree.insert(tree.end(), it->second.begin(), it->second.end());
  }
  return tree;
}

std::string ProcessName(pid_t pid) {
  absl::StatusOr<Stat> stat = ReadStat(pid);
  return stat.ok() ? stat->name : "";
}

std::vector<pid_t> DescendantsNamed(pid_t root, absl::string_view name) {
  std::vector<pid_t> found;
  for (const pid_t pid : ProcessTree(root)) {
    if (pid != root && ProcessName(pid) == name) found.push_back(pid);
  }
  return found;
}

absl::StatusOr<uint64_t> ResidentBytes(pid_t pid) { return StatusKilobytes(pid, "VmRSS"); }

absl::StatusOr<uint64_t> PeakResidentBytes(pid_t pid) { return StatusKilobytes(pid, "VmHWM"); }

std::string DescribeProcesses(const std::vector<pid_t>& pids) {
  std::string text;
  for (const pid_t pid : pids) {
    absl::StatusOr<Stat> stat = ReadStat(pid);
    if (!stat.ok() || stat->fields.size() < 2) continue;
    absl::StrAppend(&text, "\n  ", pid, " ", stat->name, " ", stat->fields[0], ", parent ",
                    stat->fields[1]);
    const std::string tasks = absl::StrCat("/proc/", pid, "/task");
    DIR* dir = opendir(tasks.c_str());
    if (dir == nullptr) continue;
    while (const dirent* entry = readdir(dir)) {
      pid_t tid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &tid)) continue;
      const std::string task = absl::StrCat(tasks, "/", tid);
      absl::StatusOr<Stat> thread = ReadStat(tid);
      const std::string syscall = FirstLine(absl::StrCat(task, "/syscall"));
      absl::StrAppend(&text, "\n    thread ", tid, " ", thread.ok() ? thread->name : "?", " ",
                      thread.ok() && !thread->fields.empty() ? thread->fields[0] : "?", ", wchan ",
                      FirstLine(absl::StrCat(task, "/wchan")), ", syscall ",
                      syscall.substr(0, syscall.find(' ')));
    }
    closedir(dir);
  }
  return text;
}

absl::StatusOr<uint64_t> CpuTicks(pid_t pid) {
  absl::StatusOr<Stat> stat = ReadStat(pid);
  if (!stat.ok()) return stat.status();
  uint64_t user = 0;
  uint64_t system = 0;
  if (stat->fields.size() < 13 || !absl::SimpleAtoi(stat->fields[11], &user) ||
      !absl::SimpleAtoi(stat->fields[12], &system)) {
    return absl::InternalError(absl::StrCat("cannot parse /proc/", pid, "/stat"));
  }
  return user + system;
}

}  // namespace mpigate::testing
