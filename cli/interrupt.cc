#include "cli/interrupt.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "cli/exit_codes.h"

namespace mpigate::cli {
namespace {

// The write end of the live watcher's pipe, for the handlers; -1 when there is none. Lock-free,
// so reading it in a handler is async-signal-safe.
std::atomic<int> signal_pipe{-1};
static_assert(std::atomic<int>::is_always_lock_free);

// What the destructor writes to stop the watcher's thread: no signal has the number 0.
constexpr unsigned char kStopByte = 0;

constexpr char kSecondSignalMessage[] =
    "mpigate: interrupted again: exiting without waiting for the tasks\n";

extern "C" void HandleInterruptSignal(int signal_number) {
  const int saved_errno = errno;
  const int fd = signal_pipe.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    // Non-blocking: with the pipe full (signals arriving faster than the watcher reads), one more
    // changes nothing.
    [[maybe_unused]] const ssize_t written = write(fd, &byte, 1);
  }
  errno = saved_errno;
}

}  // namespace

InterruptWatcher::InterruptWatcher() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  fcntl(write_fd_, F_SETFL, O_NONBLOCK);
  signal_pipe.store(write_fd_, std::memory_order_relaxed);
  watcher_ = std::thread([this] { Watch(); });

  struct sigaction action = {};
  action.sa_handler = HandleInterruptSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGINT);
  sigaddset(&action.sa_mask, SIGTERM);
  sigaction(SIGINT, &action, &previous_int_);
  sigaction(SIGTERM, &action, &previous_term_);
}

InterruptWatcher::~InterruptWatcher() {
  if (read_fd_ < 0) return;
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
  // A handler that still runs (on another thread) writes to the pipe, still open, or sees -1.
  signal_pipe.store(-1, std::memory_order_relaxed);
  // Blocking would need a full pipe, that is a watcher that stopped reading: it never does.
  while (write(write_fd_, &kStopByte, 1) < 0 && (errno == EINTR || errno == EAGAIN)) {
  }
  watcher_.join();
  if (stopper_.joinable()) stopper_.join();
  close(read_fd_);
  close(write_fd_);
}

void InterruptWatcher::OnInterrupt(absl::AnyInvocable<void()> action) {
  {
    absl::MutexLock lock(&mu_);
    if (!interrupted_) {
      action_ = std::move(action);
      return;
    }
  }
  if (action) action();
}

bool InterruptWatcher::interrupted() const {
  absl::MutexLock lock(&mu_);
  return interrupted_;
}

void InterruptWatcher::Watch() {
  int signals = 0;
  for (;;) {
    unsigned char byte;
    const ssize_t n = read(read_fd_, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == kStopByte) return;
    if (++signals == 1) {
      Interrupted();
      continue;
    }
    [[maybe_unused]] const ssize_t written =
        write(STDERR_FILENO, kSecondSignalMessage, sizeof(kSecondSignalMessage) - 1);
    _exit(kExitInterrupted);
  }
}

void InterruptWatcher::Interrupted() {
  absl::AnyInvocable<void()> action;
  {
    absl::MutexLock lock(&mu_);
    interrupted_ = true;
    action = std::move(action_);
  }
  // On a thread of its own, so that this one goes on reading: a second signal must end the
  // process even while the action waits for a service that does not answer.
  if (action) stopper_ = std::thread(std::move(action));
}

}  // namespace mpigate::cli
