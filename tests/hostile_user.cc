// hostile_user: a local user who is not the service's, for tests/hostile_user_test.cc. Run as
// root, it becomes `nobody` at once and then does, one line of its stdin at a time, what such a
// user can do to a pool on the same host, answering each with one line on stdout:
//
//   plant NAME          makes shared memory object NAME, mode 0666, holding kBait, and keeps it
//                       open: "planted 1" or "planted 0"
//   plant-parked START  plants every parked name of prefix START (size classes 16 to 23, slots 0
//                       to 3): "planted N"
//   watch START         for every object in /dev/shm whose name is START, 32 hex digits and '-'
//                       then anything (a gateway's secret prefix, seen once one of its objects
//                       exists), plants the parked names of that prefix: "planted N of M prefixes"
//   check               whether every planted object still holds kBait alone: "intact N" or
//                       "changed NAME"
//   ring ADDRESS        sends one datagram to the Unix socket ADDRESS ('@' first: abstract):
//                       "sent" or "refused ERRNO-NAME"
//   flood MS ADDRESS... sends datagrams to the ADDRESSes in turn for MS milliseconds, without
//                       waiting where one is full: "sent N full F refused M"
//
// At the end of its input it removes what it planted and exits 0; 2 if it cannot become nobody.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace {

constexpr char kBait[] = "planted by nobody";

std::vector<std::pair<std::string, int>>& Planted() {
  static auto* planted = new std::vector<std::pair<std::string, int>>();
  return *planted;
}

int Plant(const std::string& name) {
  const int fd = shm_open(absl::StrCat("/", name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
  if (fd < 0) return 0;
  fchmod(fd, 0666);  // Past the umask.
  if (write(fd, kBait, sizeof(kBait) - 1) != sizeof(kBait) - 1) return 0;
  Planted().emplace_back(name, fd);
  return 1;
}

int PlantParked(const std::string& prefix) {
  int planted = 0;
  for (int size_class = 16; size_class <= 23; ++size_class) {
    for (int slot = 0; slot < 4; ++slot) {
      planted += Plant(absl::StrCat(prefix, "parked-", size_class, "-", slot));
    }
  }
  return planted;
}

std::string Check() {
  for (const auto& [name, fd] : Planted()) {
    struct stat st;
    char bytes[sizeof(kBait)] = {};
    if (fstat(fd, &st) != 0 || st.st_size != sizeof(kBait) - 1 ||
        pread(fd, bytes, sizeof(bytes), 0) != sizeof(kBait) - 1 ||
        std::memcmp(bytes, kBait, sizeof(kBait) - 1) != 0) {
      return absl::StrCat("changed ", name);
    }
  }
  return absl::StrCat("intact ", Planted().size());
}

sockaddr_un AddressOf(const std::string& address, socklen_t& length) {
  sockaddr_un to = {};
  to.sun_family = AF_UNIX;
  const bool abstract = absl::StartsWith(address, "@");
  const size_t size = std::min(address.size(), sizeof(to.sun_path) - 1);
  std::memcpy(to.sun_path, address.data(), size);
  if (abstract) to.sun_path[0] = '\0';
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + size + (abstract ? 0 : 1));
  return to;
}

// Sends one datagram, never waiting; 0 or the errno.
int Send(int fd, const std::string& address) {
  socklen_t length = 0;
  const sockaddr_un to = AddressOf(address, length);
  const char ring = 1;
  return sendto(fd, &ring, 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to), length) == 1
             ? 0
             : errno;
}

}  // namespace

int main() {
  const passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr || setgroups(0, nullptr) != 0 ||
      setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
      setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0) {
    return 2;
  }
  const int sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::string line;
  while (std::getline(std::cin, line)) {
    const std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    const std::string& command = words[0];
    if (command == "plant" && words.size() == 2) {
      std::cout << "planted " << Plant(words[1]) << std::endl;
    } else if (command == "plant-parked" && words.size() == 2) {
      std::cout << "planted " << PlantParked(words[1]) << std::endl;
    } else if (command == "watch" && words.size() == 2) {
      std::set<std::string> prefixes;
      if (DIR* shm = opendir("/dev/shm")) {
        while (const dirent* entry = readdir(shm)) {
          const std::string name = entry->d_name;
          const size_t end = words[1].size() + 33;
          if (absl::StartsWith(name, words[1]) && name.size() > end && name[end - 1] == '-') {
            prefixes.insert(name.substr(0, end));
          }
        }
        closedir(shm);
      }
      int planted = 0;
      for (const std::string& prefix : prefixes) planted += PlantParked(prefix);
      std::cout << "planted " << planted << " of " << prefixes.size() << " prefixes" << std::endl;
    } else if (command == "check") {
      std::cout << Check() << std::endl;
    } else if (command == "ring" && words.size() == 2) {
      const int error = Send(sender, words[1]);
      std::cout << (error == 0 ? "sent" : absl::StrCat("refused ", strerrorname_np(error)))
                << std::endl;
    } else if (command == "flood" && words.size() >= 3) {
      int milliseconds = 0;
      if (!absl::SimpleAtoi(words[1], &milliseconds)) milliseconds = 0;
      const absl::Time end = absl::Now() + absl::Milliseconds(milliseconds);
      uint64_t sent = 0;
      uint64_t full = 0;
      uint64_t refused = 0;
      while (absl::Now() < end) {
        for (size_t i = 2; i < words.size(); ++i) {
          const int error = Send(sender, words[i]);
          ++(error == 0 ? sent : error == EAGAIN ? full : refused);
        }
      }
      std::cout << "sent " << sent << " full " << full << " refused " << refused << std::endl;
    } else {
      std::cout << "unknown " << line << std::endl;
    }
  }
  for (const auto& [name, fd] : Planted()) {
    close(fd);
    shm_unlink(absl::StrCat("/", name).c_str());
  }
  return 0;
}
