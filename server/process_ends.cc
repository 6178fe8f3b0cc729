#include "server/process_ends.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "wire/doorbell.h"

namespace mpigate::server {
namespace {

// The note a worker left of how it died, removed once read; empty if none.
std::string TakeDeathNote(const std::string& doorbell) {
  if (doorbell.empty()) return "";
  const std::string path = wire::DeathNotePath(doorbell);
  std::ifstream file(path);
  std::stringstream note;
  note << file.rdbuf();
  std::remove(path.c_str());
  return note.str();
}

}  // namespace

std::string HowProcessEnded(std::string heard, const std::string& doorbell,
                            const std::string& killed_because) {
  if (heard.empty()) heard = TakeDeathNote(doorbell);
  if (heard.empty()) heard = killed_because;
  if (heard.empty()) {
    heard =
        "its process ended without a word (killed by SIGKILL, e.g. by the kernel's OOM killer, "
        "or ended by the MPI runtime)";
  }
  return heard;
}

bool Reaped(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  // "PID (COMM) STATE ...", where COMM may hold anything.
  const size_t name_end = line.rfind(')');
  return name_end == std::string::npos || name_end + 2 >= line.size() || line[name_end + 2] != 'Z';
}

bool UnreapedEnds::AllReaped(absl::Time now) {
  const auto done = [now](const std::pair<pid_t, absl::Time>& ended) {
    return now - ended.second > kPatience || Reaped(ended.first);
  };
  ended_.erase(std::remove_if(ended_.begin(), ended_.end(), done), ended_.end());
  return ended_.empty();
}

}  // namespace mpigate::server
