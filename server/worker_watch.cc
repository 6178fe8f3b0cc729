#include "server/worker_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::server {
namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

WorkerWatch::WorkerWatch(std::function<void()> on_end)
    : on_end_(std::move(on_end)), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread(&WorkerWatch::Loop, this);
}

WorkerWatch::~WorkerWatch() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Poke();
  thread_.join();
  absl::MutexLock lock(&mu_);
  for (const auto& [id, fd] : pidfds_) close(fd);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status WorkerWatch::Watch(uint64_t id, pid_t pid) {
  const int fd = PidfdOpen(pid);
  if (fd < 0 && errno != ESRCH) {
    return absl::UnavailableError(
        absl::StrCat("pidfd_open of worker pid ", pid, ": ", std::strerror(errno)));
  }
  bool gone = false;
  {
    absl::MutexLock lock(&mu_);
    if (fd < 0) {
      ended_.push_back(id);
      gone = true;
    } else {
      pidfds_[id] = fd;
    }
  }
  if (gone) {
    on_end_();
  } else {
    Poke();
  }
  return absl::OkStatus();
}

void WorkerWatch::Unwatch(uint64_t id) {
  {
    absl::MutexLock lock(&mu_);
    const auto it = pidfds_.find(id);
    if (it == pidfds_.end()) return;
    close(it->second);
    pidfds_.erase(it);
  }
  Poke();
}

std::vector<uint64_t> WorkerWatch::TakeEnded() {
  absl::MutexLock lock(&mu_);
  return std::exchange(ended_, {});
}

void WorkerWatch::Poke() {
  const uint64_t one = 1;
  // A full counter wakes the thread as well as a write would.
  [[maybe_unused]] const ssize_t written = write(wake_fd_, &one, sizeof(one));
}

void WorkerWatch::Loop() {
  std::vector<pollfd> polled;
  std::vector<uint64_t> ids;
  while (true) {
    polled.assign(1, pollfd{wake_fd_, POLLIN, 0});
    ids.clear();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      for (const auto& [id, fd] : pidfds_) {
        polled.push_back(pollfd{fd, POLLIN, 0});
        ids.push_back(id);
      }
    }
    if (poll(polled.data(), polled.size(), -1) < 0 && errno != EINTR) return;
    if (polled[0].revents != 0) {
      uint64_t count = 0;
      [[maybe_unused]] const ssize_t taken = read(wake_fd_, &count, sizeof(count));
    }
    bool any = false;
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 1; i < polled.size(); ++i) {
        if (polled[i].revents == 0) continue;
        // Unwatched meanwhile (and its descriptor perhaps reused): not an end to report.
        const auto it = pidfds_.find(ids[i - 1]);
        if (it == pidfds_.end() || it->second != polled[i].fd) continue;
        close(it->second);
        pidfds_.erase(it);
        ended_.push_back(ids[i - 1]);
        any = true;
      }
    }
    if (any) on_end_();
  }
}

}  // namespace mpigate::server
