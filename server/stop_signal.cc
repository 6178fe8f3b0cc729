#include "server/stop_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::server {
namespace {

int pipe_fds[2] = {-1, -1};

// Written to the pipe by Request(): no signal has number 0.
constexpr unsigned char kRequestByte = 0;

absl::Mutex request_mu(absl::kConstInit);
std::string* request_reason ABSL_GUARDED_BY(request_mu) = nullptr;

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

void StopSignal::Request(std::string reason) {
  {
    absl::MutexLock lock(&request_mu);
    if (request_reason != nullptr) return;
    request_reason = new std::string(std::move(reason));
  }
  [[maybe_unused]] const ssize_t written = write(pipe_fds[1], &kRequestByte, 1);
}

std::string StopSignal::Wait() {
  unsigned char byte = 0;
  while (read(pipe_fds[0], &byte, 1) != 1) {
    if (errno != EINTR) return "a broken signal pipe";
  }
  if (byte == kRequestByte) {
    absl::MutexLock lock(&request_mu);
    return *request_reason;
  }
  return byte == SIGINT ? "SIGINT" : byte == SIGTERM ? "SIGTERM" : absl::StrCat("signal ", byte);
}

}  // namespace mpigate::server
