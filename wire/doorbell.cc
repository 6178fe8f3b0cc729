#include "wire/doorbell.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::wire {
namespace {

absl::Status ErrnoError(absl::string_view operation) {
  return absl::InternalError(absl::StrCat(operation, ": ", std::strerror(errno)));
}

// An abstract socket address: a leading NUL, then the name; no file to clean up.
socklen_t AbstractAddress(absl::string_view name, sockaddr_un& address) {
  std::memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  const size_t length = std::min(name.size(), sizeof(address.sun_path) - 1);
  std::memcpy(address.sun_path + 1, name.data(), length);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + length);
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

absl::StatusOr<Doorbell> Doorbell::Open() {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError("socket");
  std::string name = absl::StrCat("mpigate-doorbell-", getpid());
  sockaddr_un address;
  const socklen_t length = AbstractAddress(name, address);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    absl::Status status = ErrnoError(absl::StrCat("bind doorbell ", name));
    close(fd);
    return status;
  }
  return Doorbell(fd, std::move(name));
}

Doorbell::Doorbell(Doorbell&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), address_(std::move(other.address_)) {}

Doorbell& Doorbell::operator=(Doorbell&& other) noexcept {
  if (this != &other) {
    CloseIfOpen(fd_);
    fd_ = std::exchange(other.fd_, -1);
    address_ = std::move(other.address_);
  }
  return *this;
}

Doorbell::~Doorbell() { CloseIfOpen(fd_); }

bool Doorbell::Wait(absl::Duration timeout) {
  pollfd ready = {.fd = fd_, .events = POLLIN, .revents = 0};
  // ppoll, not poll: the backoff's microsecond waits must not become whole milliseconds.
  const timespec limit = absl::ToTimespec(std::min(timeout, absl::Hours(24)));
  if (ppoll(&ready, 1, &limit, nullptr) <= 0) return false;
  char ring[64];
  bool rang = false;
  while (recv(fd_, ring, sizeof(ring), 0) >= 0) rang = true;
  return rang;
}

absl::StatusOr<DoorbellRinger> DoorbellRinger::Open() {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoError("socket");
  return DoorbellRinger(fd);
}

DoorbellRinger::DoorbellRinger(DoorbellRinger&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

DoorbellRinger& DoorbellRinger::operator=(DoorbellRinger&& other) noexcept {
  if (this != &other) {
    CloseIfOpen(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DoorbellRinger::~DoorbellRinger() { CloseIfOpen(fd_); }

absl::Status DoorbellRinger::Ring(absl::string_view address) {
  sockaddr_un to;
  const socklen_t length = AbstractAddress(address, to);
  const char ring = 1;
  if (sendto(fd_, &ring, 1, 0, reinterpret_cast<const sockaddr*>(&to), length) == 1 ||
      errno == EAGAIN) {
    return absl::OkStatus();
  }
  return ErrnoError(absl::StrCat("ring doorbell ", address));
}

}  // namespace mpigate::wire
