#include "worker/runner_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "wire/tag.h"
#include "worker/clean_spawn.h"

extern char** environ;

namespace mpigate::worker {
namespace {

// The runner finds its end of the socket here (runner_main.cc).
constexpr int kRunnerSocketFd = 3;

// How long Reap() waits for the processes of a runner's session to die once killed.
constexpr absl::Duration kSessionKillPatience = absl::Seconds(2);

// The poll() timeout for `timeout`: whole milliseconds, rounded up so that a short wait is not a
// busy one; -1 for ever.
int PollMillis(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return -1;
  if (timeout <= absl::ZeroDuration()) return 0;
  const int64_t millis = absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(millis, INT_MAX));
}

std::string DescribeEnd(pid_t pid, int wait_status) {
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("task runner (pid ", pid, ") exited with status ",
                        WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    const int signal_number = WTERMSIG(wait_status);
    const char* abbreviation = sigabbrev_np(signal_number);
    const char* description = sigdescr_np(signal_number);
    return absl::StrCat("task runner (pid ", pid, ") was killed by signal ", signal_number, " (SIG",
                        abbreviation != nullptr ? abbreviation : "?", ", ",
                        description != nullptr ? description : "unknown signal",
                        signal_number == SIGKILL ? "; the kernel's OOM killer sends this too" : "",
                        ")");
  }
  return absl::StrCat("task runner (pid ", pid, ") ended with wait status ", wait_status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunnerProcess>> RunnerProcess::Spawn(const Options& options) {
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    return absl::ErrnoToStatus(errno, "task runner: socketpair");
  }
  absl::Cleanup close_runner_end = [&ends] { close(ends[1]); };
  absl::Cleanup close_worker_end = [&ends] { close(ends[0]); };
  // dup2 onto itself would leave close-on-exec set (glibc clears it only from 2.29 on, and only
  // then): keep the runner's end off fd 3 so that dup2 always makes a fresh, inheritable copy.
  if (ends[1] == kRunnerSocketFd) {
    const int moved = fcntl(ends[1], F_DUPFD_CLOEXEC, kRunnerSocketFd + 1);
    if (moved < 0) return absl::ErrnoToStatus(errno, "task runner: fcntl");
    close(ends[1]);
    ends[1] = moved;
  }

  posix_spawn_file_actions_t actions;
  int error = posix_spawn_file_actions_init(&actions);
  if (error != 0) return absl::ErrnoToStatus(error, "task runner: posix_spawn_file_actions_init");
  absl::Cleanup destroy_actions = [&actions] { posix_spawn_file_actions_destroy(&actions); };
  error = posix_spawn_file_actions_adddup2(&actions, ends[1], kRunnerSocketFd);
  // MPI's and gRPC's descriptors are not all close-on-exec; the runner must hold none of them.
  if (error == 0) error = posix_spawn_file_actions_addclosefrom_np(&actions, kRunnerSocketFd + 1);
  if (error != 0) return absl::ErrnoToStatus(error, "task runner: posix_spawn_file_actions");

  posix_spawnattr_t attributes;
  error = posix_spawnattr_init(&attributes);
  if (error != 0) return absl::ErrnoToStatus(error, "task runner: posix_spawnattr_init");
  absl::Cleanup destroy_attributes = [&attributes] { posix_spawnattr_destroy(&attributes); };
  // A crash in task code must die of its own signal, to be described as such. A session of its
  // own, so that Reap() finds what its tasks started, also in process groups of their own.
  if (absl::Status status = SetCleanSpawnAttributes(attributes, SpawnGroup::kSession);
      !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("task runner: ", status.message()));
  }

  std::vector<std::string> args = {options.binary};
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  error = posix_spawn(&pid, options.binary.c_str(), &actions, &attributes, argv.data(), environ);
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start the task runner ", options.binary, ": ", std::strerror(error)));
  }
  std::move(close_worker_end).Cancel();
  // Without a pidfd (kernels before 5.3) death is still seen as the end of the stream. Through
  // syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C".
  const int pid_fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return std::unique_ptr<RunnerProcess>(new RunnerProcess(pid, ends[0], pid_fd));
}

RunnerProcess::~RunnerProcess() { Kill(); }

absl::StatusOr<std::optional<wire::HelloFrame>> RunnerProcess::AwaitHello(
    absl::Duration timeout) {
  wire::StreamFrame frame;
  const Received received = Receive(timeout, /*wake_fd=*/-1, frame);
  if (received == Received::kDied) return absl::AbortedError(death_);
  if (received == Received::kTimeout) return std::nullopt;
  wire::HelloFrame hello;
  if (frame.tag != wire::Tag::kHello || !hello.ParseFromString(frame.bytes)) {
    Reap("sent something other than a hello at start");
    return absl::AbortedError(death_);
  }
  return hello;
}

void RunnerProcess::SendTasks(absl::Span<const absl::string_view> task_frames) {
  Write(wire::Tag::kTask, task_frames);
}

void RunnerProcess::SendCancel(uint64_t task_key) {
  wire::CancelFrame cancel;
  cancel.set_task_key(task_key);
  const std::string bytes = cancel.SerializeAsString();
  const absl::string_view frame = bytes;
  Write(wire::Tag::kCancel, {&frame, 1});
}

void RunnerProcess::Write(wire::Tag tag, absl::Span<const absl::string_view> frames) {
  if (!alive()) return;
  const absl::Status written =
      wire::WriteFrames(socket_fd_, tag, frames, [this] { return ReadWhileFull(); });
  // A runner that cannot be written to is of no use: Await reaps it and says how it ended (unless
  // ReadWhileFull has seen it end).
  if (!written.ok() && alive()) kill(-pid_, SIGKILL);
}

absl::Status RunnerProcess::ReadWhileFull() {
  // The pidfd may be missing (-1), which poll(2) skips.
  pollfd fds[2] = {{socket_fd_, POLLOUT | POLLIN, 0}, {pid_fd_, POLLIN, 0}};
  int ready;
  do {
    ready = poll(fds, 2, -1);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    Reap(absl::StrCat("could not be polled (", std::strerror(errno), ")"));
    return absl::UnavailableError(death_);
  }
  if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    // Whatever the runner has begun to write it finishes without waiting for this write, so a
    // read that blocks inside a frame ends (wire/stream_frames.h).
    do {
      absl::StatusOr<wire::StreamFrame> frame = reader_.Next();
      if (!frame.ok()) {
        Reap();
        return absl::UnavailableError(death_);
      }
      read_ahead_.push_back(*std::move(frame));
    } while (reader_.HasFrame());
    return absl::OkStatus();
  }
  if ((fds[0].revents & POLLOUT) != 0) return absl::OkStatus();
  // Only the pidfd: the runner has ended, though another process holds its end of the socket.
  Reap();
  return absl::UnavailableError(death_);
}

RunnerEvent RunnerProcess::Await(absl::Duration timeout, int wake_fd) {
  RunnerEvent event;
  wire::StreamFrame frame;
  switch (Receive(timeout, wake_fd, frame)) {
    case Received::kTimeout:
      return event;
    case Received::kDied:
      event.kind = RunnerEvent::Kind::kDied;
      event.death = death_;
      return event;
    case Received::kFrame:
      break;
  }
  if (frame.tag == wire::Tag::kResult) {
    event.kind = RunnerEvent::Kind::kResult;
    event.result = std::move(frame.bytes);
    return event;
  }
  if (frame.tag == wire::Tag::kProgress && event.progress.ParseFromString(frame.bytes)) {
    event.kind = RunnerEvent::Kind::kProgress;
    return event;
  }
  Reap(absl::StrCat("sent a malformed frame (tag ", static_cast<int>(frame.tag),
                    ") while running a task"));
  event.kind = RunnerEvent::Kind::kDied;
  event.death = death_;
  return event;
}

void RunnerProcess::Kill() {
  if (alive()) Reap();
}

RunnerProcess::Received RunnerProcess::Receive(absl::Duration timeout, int wake_fd,
                                               wire::StreamFrame& frame) {
  // Frames read ahead come first, also those the runner wrote before it died.
  if (!read_ahead_.empty()) {
    frame = std::move(read_ahead_.front());
    read_ahead_.pop_front();
    return Received::kFrame;
  }
  if (!alive()) return Received::kDied;
  // A frame already read ahead needs no wait.
  bool readable = reader_.HasFrame();
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  // The pidfd may be missing (-1), which poll(2) skips.
  pollfd fds[3] = {{socket_fd_, POLLIN, 0}, {pid_fd_, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const nfds_t count = wake_fd >= 0 ? 3 : 2;
  while (!readable) {
    const int ready = poll(fds, count,
                           PollMillis(deadline == absl::InfiniteFuture() ? absl::InfiniteDuration()
                                                                         : deadline - absl::Now()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      Reap(absl::StrCat("could not be polled (", std::strerror(errno), ")"));
      return Received::kDied;
    }
    if (ready == 0) return Received::kTimeout;
    // What the runner wrote before it ended is still there to read: the socket comes first.
    readable = fds[0].revents != 0;
    if (!readable && fds[1].revents == 0) return Received::kTimeout;  // Woken by wake_fd.
    break;
  }
  if (readable) {
    absl::StatusOr<wire::StreamFrame> read = reader_.Next();
    if (read.ok()) {
      frame = *std::move(read);
      return Received::kFrame;
    }
  }
  // The stream ended, or only the pidfd is ready: the runner has ended (or handed its end of the
  // socket to a process that outlives it).
  Reap();
  return Received::kDied;
}

void RunnerProcess::Reap(absl::string_view broke) {
  // The whole group: whatever the task started in it goes too. A runner that is already dead
  // is a zombie until reaped, and the signal leaves its exit status as it was.
  kill(-pid_, SIGKILL);
  // And the rest of its session: programs that exec started in process groups of their own,
  // which the runner would have killed when their tasks ended. Before the runner is reaped, so
  // that its pid, the session's id, cannot have gone to another process meanwhile.
  const bool session_gone = KillSession(pid_, kSessionKillPatience);
  int wait_status = 0;
  while (waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
  }
  death_ = broke.empty() ? DescribeEnd(pid_, wait_status)
                         : absl::StrCat("task runner (pid ", pid_, ") ", broke, " and was killed");
  if (!session_gone) {
    absl::StrAppend(&death_, "; a process its tasks started outlived it (stuck in the kernel?)");
  }
  close(socket_fd_);
  if (pid_fd_ >= 0) close(pid_fd_);
  socket_fd_ = -1;
  pid_fd_ = -1;
  pid_ = -1;
}

}  // namespace mpigate::worker
