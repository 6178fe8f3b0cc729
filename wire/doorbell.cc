#include "wire/doorbell.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mpigate::wire {
namespace {

absl::Status ErrnoError(absl::string_view operation) {
  return absl::InternalError(absl::StrCat(operation, ": ", std::strerror(errno)));
}

// Doorbells live in directories /tmp/<kDirectoryStart>XXXXXX, each holding one socket kSocket.
constexpr char kTmp[] = "/tmp";
constexpr char kDirectoryStart[] = "mpigate-doorbell-";
constexpr char kSocket[] = "bell";

// The address of the socket at `path`; false if the path is too long for one.
bool PathAddress(absl::string_view path, sockaddr_un& address) {
  std::memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.data(), path.size());
  return true;
}

// Whether a datagram socket listens at `path`: a socket file whose process is gone refuses.
bool Listening(const std::string& path) {
  sockaddr_un address;
  if (!PathAddress(path, address)) return true;
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;
  const bool refused =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 &&
      errno == ECONNREFUSED;
  close(fd);
  return !refused;
}

// Removes this user's doorbell directories whose socket nobody listens on: those of workers that
// were killed before they could remove theirs. A directory without its socket yet (a worker
// between mkdtemp and bind) is left alone.
void RemoveDeadDoorbells() {
  DIR* tmp = opendir(kTmp);
  if (tmp == nullptr) return;
  while (const dirent* entry = readdir(tmp)) {
    struct stat st;
    if (!absl::StartsWith(entry->d_name, kDirectoryStart) ||
        fstatat(dirfd(tmp), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != geteuid()) {
      continue;
    }
    const std::string directory = absl::StrCat(kTmp, "/", entry->d_name);
    const std::string socket_path = absl::StrCat(directory, "/", kSocket);
    if (Listening(socket_path)) continue;
    unlink(socket_path.c_str());
    unlink(DeathNotePath(socket_path).c_str());
    rmdir(directory.c_str());
  }
  closedir(tmp);
}

// Whether the datagram `message` came with credentials of this process's user.
bool FromOurUser(const msghdr& message) {
  for (const cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(const_cast<msghdr*>(&message), const_cast<cmsghdr*>(header))) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_CREDENTIALS) continue;
    ucred credentials;
    std::memcpy(&credentials, CMSG_DATA(header), sizeof(credentials));
    return credentials.uid == geteuid();
  }
  return false;
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

std::string DeathNotePath(absl::string_view address) {
  const size_t slash = address.rfind('/');
  return absl::StrCat(address.substr(0, slash == absl::string_view::npos ? 0 : slash + 1),
                      "death-note");
}

absl::StatusOr<Doorbell> Doorbell::Open() {
  RemoveDeadDoorbells();
  // mkdtemp makes the directory mode 0700, under a name no one can take first.
  std::string directory = absl::StrCat(kTmp, "/", kDirectoryStart, "XXXXXX");
  if (mkdtemp(directory.data()) == nullptr) return ErrnoError("mkdtemp doorbell directory");
  std::string path = absl::StrCat(directory, "/", kSocket);
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un address;
  const int on = 1;
  if (fd < 0 || !PathAddress(path, address) ||
      bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) {
    absl::Status status = ErrnoError(absl::StrCat("bind doorbell ", path));
    if (fd >= 0) close(fd);
    unlink(path.c_str());
    rmdir(directory.c_str());
    return status;
  }
  return Doorbell(fd, std::move(directory), std::move(path));
}

Doorbell::Doorbell(Doorbell&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      directory_(std::exchange(other.directory_, "")),
      address_(std::exchange(other.address_, "")),
      rung_by_(std::exchange(other.rung_by_, "")) {}

Doorbell& Doorbell::operator=(Doorbell&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    directory_ = std::exchange(other.directory_, "");
    address_ = std::exchange(other.address_, "");
    rung_by_ = std::exchange(other.rung_by_, "");
  }
  return *this;
}

Doorbell::~Doorbell() { Close(); }

void Doorbell::Close() {
  CloseIfOpen(fd_);
  if (directory_.empty()) return;
  unlink(address_.c_str());
  unlink(DeathNotePath(address_).c_str());
  rmdir(directory_.c_str());
  directory_.clear();
}

bool Doorbell::Wait(absl::Duration timeout) {
  pollfd ready = {.fd = fd_, .events = POLLIN, .revents = 0};
  // ppoll, not poll: the backoff's microsecond waits must not become whole milliseconds.
  const timespec limit = absl::ToTimespec(std::min(timeout, absl::Hours(24)));
  if (ppoll(&ready, 1, &limit, nullptr) <= 0) return false;
  char ring[64];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  bool rang = false;
  while (true) {
    iovec data = {.iov_base = ring, .iov_len = sizeof(ring)};
    sockaddr_un from;
    msghdr message = {};
    message.msg_name = &from;
    message.msg_namelen = sizeof(from);
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    if (recvmsg(fd_, &message, 0) < 0) break;
    if (!FromOurUser(message)) continue;
    rang = true;
    // An unbound sender has no path: nothing to ring back.
    const size_t path_bytes = message.msg_namelen > offsetof(sockaddr_un, sun_path)
                                  ? message.msg_namelen - offsetof(sockaddr_un, sun_path)
                                  : 0;
    if (path_bytes > 0 && from.sun_path[0] != '\0') {
      rung_by_.assign(from.sun_path, strnlen(from.sun_path, path_bytes));
    }
  }
  return rang;
}

absl::Status Doorbell::Ring(absl::string_view address) {
  sockaddr_un to;
  if (!PathAddress(address, to)) {
    return absl::InvalidArgumentError(absl::StrCat("not a doorbell's path: '", address, "'"));
  }
  const char ring = 1;
  if (sendto(fd_, &ring, 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) == 1 ||
      errno == EAGAIN) {
    return absl::OkStatus();
  }
  return ErrnoError(absl::StrCat("ring doorbell ", address));
}

void Doorbell::RingBack() {
  // A ring only wakes: one that fails (the ringer has gone) costs its waiter a poll, no more.
  if (!rung_by_.empty()) Ring(rung_by_).IgnoreError();
}

}  // namespace mpigate::wire
