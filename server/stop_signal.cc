#include "server/stop_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mpigate::server {
namespace {

int pipe_fds[2] = {-1, -1};

void OnSignal(int signal_number) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  // Nothing useful can be done in a handler if the pipe is full: a stop is already pending.
  [[maybe_unused]] const ssize_t written = write(pipe_fds[1], &byte, 1);
  errno = saved_errno;
}

}  // namespace

absl::Status StopSignal::Install() {
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  fcntl(pipe_fds[1], F_SETFL, O_NONBLOCK);
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (const int signal_number : {SIGTERM, SIGINT}) {
    if (sigaction(signal_number, &action, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("sigaction: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::string StopSignal::Wait() {
  unsigned char byte = 0;
  while (read(pipe_fds[0], &byte, 1) != 1) {
    if (errno != EINTR) return "a broken signal pipe";
  }
  return byte == SIGINT ? "SIGINT" : byte == SIGTERM ? "SIGTERM" : absl::StrCat("signal ", byte);
}

}  // namespace mpigate::server
