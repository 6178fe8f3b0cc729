#include "worker/exec_task.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mpigate/v1/exec.pb.h"
#include "worker/clean_spawn.h"

extern char** environ;

namespace mpigate::worker {
namespace {

constexpr uint64_t kDefaultMaxOutputBytes = uint64_t{256} << 20;
// How often the loop looks at the cancellation flag and the clock when the program is quiet.
constexpr absl::Duration kMaxPollWait = absl::Milliseconds(10);
// How much of stderr a failure under `check` quotes.
constexpr size_t kStderrTailBytes = 2048;

// An owned file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

// Close-on-exec, so that a program spawned by another thread at the same moment cannot inherit
// (and hold open) an end of this program's pipes.
absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "exec: pipe2");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// Writing to the stdin of a program that has stopped reading raises SIGPIPE, whose default action
// would kill the worker. Blocking it on this thread for the duration of the task, rather than
// ignoring it for the whole process, leaves the disposition the rest of the worker (MPI, task
// libraries) chose untouched; the write fails with EPIPE instead, and the SIGPIPE it left pending
// is consumed so that it is not delivered when the mask is restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&sigpipe_);
    sigaddset(&sigpipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigpipe_, &previous_);
  }
  ~SigpipeBlock() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

  // Call after a write failed with EPIPE.
  void ConsumePending() {
    const timespec no_wait{};
    sigtimedwait(&sigpipe_, nullptr, &no_wait);
  }

 private:
  sigset_t sigpipe_;
  sigset_t previous_;
};

// The spawned program's process group, led by the program itself. Destroying it before Reap()
// kills the whole group and reaps the leader, so that no error path leaves a program running.
class ProcessGroup {
 public:
  explicit ProcessGroup(pid_t leader) : leader_(leader) {}
  ~ProcessGroup() {
    if (!leader_gone_) {
      Kill();
      Reap().IgnoreError();
    }
  }
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // True once the leader has exited. It is left a zombie (WNOWAIT) until Reap(): while it is, its
  // pid, which is also the group's id, cannot be reused, so Kill() cannot hit a stranger.
  bool LeaderExited() {
    siginfo_t info{};
    if (waitid(P_PID, leader_, &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
      return info.si_pid == leader_;
    }
    // ECHILD: the worker ignores SIGCHLD, so the kernel reaped the leader and its pid is free.
    leader_gone_ = true;
    return true;
  }

  void Kill() const {
    if (!leader_gone_) kill(-leader_, SIGKILL);
  }

  // Waits for the leader to end and returns its wait status.
  absl::StatusOr<int> Reap() {
    int status = 0;
    pid_t pid = -1;
    if (!leader_gone_) {
      do {
        pid = waitpid(leader_, &status, 0);
      } while (pid < 0 && errno == EINTR);
      leader_gone_ = true;
    }
    if (pid < 0) {
      return absl::InternalError(
          "exec: the program's exit status was lost (does the worker ignore SIGCHLD?)");
    }
    return status;
  }

 private:
  const pid_t leader_;
  // Reaped, by Reap() or by the kernel: the pid may belong to another process now.
  bool leader_gone_ = false;
};

bool HasNul(absl::string_view text) { return text.find('\0') != absl::string_view::npos; }

// Everything becomes a C string for posix_spawn: refuse what would be silently cut short there.
absl::Status Validate(const v1::ExecRequest& request) {
  if (request.argv().empty()) {
    return absl::InvalidArgumentError("exec: argv is empty; it needs at least the program to run");
  }
  for (const std::string& arg : request.argv()) {
    if (HasNul(arg)) return absl::InvalidArgumentError("exec: an argument holds a NUL byte");
  }
  for (const auto& [name, value] : request.env()) {
    if (name.empty() || name.find('=') != std::string::npos || HasNul(name) || HasNul(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exec: bad environment variable '", absl::string_view(name).substr(0, 128),
          "': names are non-empty without '=', and neither name nor value holds a NUL byte"));
    }
  }
  if (HasNul(request.working_directory())) {
    return absl::InvalidArgumentError("exec: the working directory holds a NUL byte");
  }
  return absl::OkStatus();
}

// NAME=VALUE entries: the worker's own (unless clear_env) with the request's on top.
std::vector<std::string> Environment(const v1::ExecRequest& request) {
  std::vector<std::string> env;
  if (!request.clear_env()) {
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const absl::string_view variable(*entry);
      const std::string name(variable.substr(0, variable.find('=')));
      if (request.env().count(name) == 0) env.emplace_back(variable);
    }
  }
  for (const auto& [name, value] : request.env()) env.push_back(absl::StrCat(name, "=", value));
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Why `directory` cannot be a working directory, as an errno, or 0 if it can.
int DirectoryError(const std::string& directory) {
  struct stat info;
  if (stat(directory.c_str(), &info) != 0) return errno;
  if (!S_ISDIR(info.st_mode)) return ENOTDIR;
  if (access(directory.c_str(), X_OK) != 0) return errno;
  return 0;
}

// posix_spawn reports a failed chdir like a failed exec, by an errno alone: tell them apart.
absl::Status SpawnError(const v1::ExecRequest& request, int error) {
  const std::string& directory = request.working_directory();
  if (!directory.empty()) {
    if (const int directory_error = DirectoryError(directory); directory_error != 0) {
      return absl::NotFoundError(absl::StrCat("exec: cannot enter working directory '", directory,
                                              "': ", std::strerror(directory_error)));
    }
  }
  return absl::NotFoundError(
      absl::StrCat("exec: cannot run '", request.argv(0), "': ", std::strerror(error)));
}

// Starts the program with `stdio` as its fds 0, 1 and 2, in a new process group it leads.
absl::StatusOr<pid_t> Spawn(const v1::ExecRequest& request, const int (&stdio)[3]) {
  posix_spawn_file_actions_t actions;
  int error = posix_spawn_file_actions_init(&actions);
  if (error != 0) return absl::ErrnoToStatus(error, "exec: posix_spawn_file_actions_init");
  absl::Cleanup destroy_actions = [&actions] { posix_spawn_file_actions_destroy(&actions); };
  for (int target = 0; target < 3 && error == 0; ++target) {
    error = posix_spawn_file_actions_adddup2(&actions, stdio[target], target);
  }
  if (error == 0 && !request.working_directory().empty()) {
    error = posix_spawn_file_actions_addchdir_np(&actions, request.working_directory().c_str());
  }
  // The worker's own descriptors (MPI's, gRPC's, task libraries') are not all close-on-exec; the
  // program must not hold them.
  if (error == 0) error = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (error != 0) return absl::ErrnoToStatus(error, "exec: posix_spawn_file_actions");

  posix_spawnattr_t attributes;
  error = posix_spawnattr_init(&attributes);
  if (error != 0) return absl::ErrnoToStatus(error, "exec: posix_spawnattr_init");
  absl::Cleanup destroy_attributes = [&attributes] { posix_spawnattr_destroy(&attributes); };
  // The worker's thread blocks SIGPIPE, at least, during this task.
  if (absl::Status status = SetCleanSpawnAttributes(attributes); !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("exec: ", status.message()));
  }

  std::vector<std::string> argv(request.argv().begin(), request.argv().end());
  std::vector<std::string> env = Environment(request);
  pid_t pid = 0;
  // glibc spawns with clone(CLONE_VM | CLONE_VFORK): unlike fork(), nothing of the MPI-initialised
  // worker is duplicated.
  error = posix_spawnp(&pid, argv[0].c_str(), &actions, &attributes, CStrings(argv).data(),
                       CStrings(env).data());
  if (error != 0) return SpawnError(request, error);
  return pid;
}

// One of the program's output streams, read until end of file.
struct Output {
  absl::string_view name;
  Fd fd;
  std::string* bytes;
};

// Feeds the program its stdin and collects its stdout and stderr until it has exited and both are
// at end of file. Run() fails, leaving the group to be killed, when the task is cancelled, past
// the time limit or past the output limit.
class Exchange {
 public:
  Exchange(const TaskContext& context, const v1::ExecRequest& request, ProcessGroup& group,
           absl::Time start, Fd stdin_fd, Output stdout_output, Output stderr_output)
      : context_(context),
        request_(request),
        group_(group),
        start_(start),
        deadline_(Deadline(request, start)),
        max_output_bytes_(request.max_output_bytes() == 0 ? kDefaultMaxOutputBytes
                                                          : request.max_output_bytes()),
        stdin_(std::move(stdin_fd)),
        outputs_{std::move(stdout_output), std::move(stderr_output)} {
    if (request_.stdin().empty()) {
      stdin_.Reset();
    } else {
      // Non-blocking on the worker's side only: pipe2(O_NONBLOCK) would make the program's end
      // non-blocking too, which few programs expect of their stdin.
      fcntl(stdin_.get(), F_SETFL, O_NONBLOCK);
    }
  }

  absl::Status Run() {
    while (true) {
      if (absl::Status status = Interruption(); !status.ok()) return status;
      if (!exited_ && group_.LeaderExited()) {
        exited_ = true;
        exited_at_ = absl::Now();
        // Whatever it left running in the background would outlive the task, and might hold the
        // output pipes open for ever.
        group_.Kill();
      }
      if (exited_ && !OutputsOpen()) return absl::OkStatus();
      if (absl::Status status = PollOnce(); !status.ok()) return status;
    }
  }

  // When the leader was seen to exit; valid once Run() has succeeded.
  absl::Time exited_at() const { return exited_at_; }

 private:
  static absl::Time Deadline(const v1::ExecRequest& request, absl::Time start) {
    if (request.time_limit_ms() == 0) return absl::InfiniteFuture();
    // Clamped: a uint64 past int64's range would turn negative; absl saturates what is left.
    return start + absl::Milliseconds(static_cast<int64_t>(std::min<uint64_t>(
                       request.time_limit_ms(), std::numeric_limits<int64_t>::max())));
  }

  const std::string& Program() const { return request_.argv(0); }

  bool OutputsOpen() const { return outputs_[0].fd.open() || outputs_[1].fd.open(); }

  // Cancellation or the time limit.
  absl::Status Interruption() const {
    if (context_.cancelled()) {
      return absl::CancelledError(absl::StrCat("exec: '", Program(), "' interrupted after ",
                                               absl::ToInt64Milliseconds(absl::Now() - start_),
                                               " ms; killed"));
    }
    if (absl::Now() >= deadline_) {
      return absl::DeadlineExceededError(absl::StrCat("exec: '", Program(),
                                                      "' ran past its time limit of ",
                                                      request_.time_limit_ms(), " ms; killed"));
    }
    return absl::OkStatus();
  }

  // Waits until a pipe is ready or it is time to look at the flag, the clock and the leader
  // again, and serves the pipes that are ready.
  absl::Status PollOnce() {
    std::vector<pollfd> fds;
    if (stdin_.open()) fds.push_back({stdin_.get(), POLLOUT, 0});
    for (const Output& output : outputs_) {
      if (output.fd.open()) fds.push_back({output.fd.get(), POLLIN, 0});
    }
    const int ready = poll(fds.data(), fds.size(), TimeoutMs());
    if (ready < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "exec: poll");
    for (int i = 0; ready > 0 && i < static_cast<int>(fds.size()); ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == stdin_.get()) WriteStdin();
      for (Output& output : outputs_) {
        if (fds[i].fd != output.fd.get()) continue;
        if (absl::Status status = ReadOutput(output); !status.ok()) return status;
      }
    }
    return absl::OkStatus();
  }

  int TimeoutMs() {
    absl::Duration wait = std::min(kMaxPollWait, deadline_ - absl::Now());
    // With both outputs closed only the exit is awaited, and no descriptor wakes poll() for it:
    // short waits first, so that a program that closed them by exiting is noticed quickly.
    if (!OutputsOpen()) {
      wait = std::min(wait, exit_wait_);
      exit_wait_ = std::min(exit_wait_ * 2, kMaxPollWait);
    }
    return static_cast<int>(absl::ToInt64Milliseconds(
        absl::Ceil(std::max(wait, absl::ZeroDuration()), absl::Milliseconds(1))));
  }

  // Writes what the pipe takes without blocking, and closes it when all is written or the program
  // will read no more (EPIPE: it closed its stdin or exited), which is not an error, as with
  // Python's subprocess.
  void WriteStdin() {
    const std::string& input = request_.stdin();
    const ssize_t n = write(stdin_.get(), input.data() + written_, input.size() - written_);
    if (n > 0) written_ += static_cast<size_t>(n);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0 && errno == EPIPE) sigpipe_.ConsumePending();
    if (n < 0 || written_ == input.size()) stdin_.Reset();
  }

  absl::Status ReadOutput(Output& output) {
    char buffer[64 * 1024];
    const ssize_t n = read(output.fd.get(), buffer, sizeof(buffer));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return absl::OkStatus();
    if (n <= 0) {
      output.fd.Reset();
      return absl::OkStatus();
    }
    output.bytes->append(buffer, static_cast<size_t>(n));
    if (output.bytes->size() > max_output_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat("exec: '", Program(), "' wrote more than ",
                                                       max_output_bytes_, " bytes to ", output.name,
                                                       "; killed"));
    }
    return absl::OkStatus();
  }

  const TaskContext& context_;
  const v1::ExecRequest& request_;
  ProcessGroup& group_;
  const absl::Time start_;
  const absl::Time deadline_;
  const uint64_t max_output_bytes_;
  Fd stdin_;
  Output outputs_[2];
  SigpipeBlock sigpipe_;
  size_t written_ = 0;
  bool exited_ = false;
  absl::Time exited_at_;
  absl::Duration exit_wait_ = absl::Milliseconds(1);
};

// Fills in how the program ended from its wait status.
void SetExitStatus(int wait_status, v1::ExecResponse& response) {
  if (WIFSIGNALED(wait_status)) {
    response.set_exit_code(-1);
    response.set_signal(WTERMSIG(wait_status));
  } else {
    response.set_exit_code(WEXITSTATUS(wait_status));
  }
}

// For `check`: UNKNOWN unless the program exited with status 0.
absl::Status CheckExit(const v1::ExecRequest& request, const v1::ExecResponse& response) {
  if (response.exit_code() == 0 && response.signal() == 0) return absl::OkStatus();
  std::string message = absl::StrCat("exec: '", request.argv(0), "' ");
  if (response.signal() != 0) {
    absl::StrAppend(&message, "was killed by signal ", response.signal(), " (",
                    strsignal(response.signal()), ")");
  } else {
    absl::StrAppend(&message, "exited with status ", response.exit_code());
  }
  absl::string_view tail = absl::StripTrailingAsciiWhitespace(response.stderr());
  if (!tail.empty()) {
    const bool cut = tail.size() > kStderrTailBytes;
    if (cut) tail.remove_prefix(tail.size() - kStderrTailBytes);
    absl::StrAppend(&message, "; stderr: ", cut ? "..." : "", tail);
  }
  return absl::UnknownError(message);
}

absl::StatusOr<v1::ExecResponse> Exec(const TaskContext& context, const v1::ExecRequest& request) {
  if (absl::Status status = Validate(request); !status.ok()) return status;
  if (context.cancelled()) {
    return absl::CancelledError(
        absl::StrCat("exec: '", request.argv(0), "' interrupted before it started"));
  }
  absl::StatusOr<Pipe> stdin_pipe = MakePipe();
  if (!stdin_pipe.ok()) return stdin_pipe.status();
  absl::StatusOr<Pipe> stdout_pipe = MakePipe();
  if (!stdout_pipe.ok()) return stdout_pipe.status();
  absl::StatusOr<Pipe> stderr_pipe = MakePipe();
  if (!stderr_pipe.ok()) return stderr_pipe.status();

  const absl::Time start = absl::Now();
  absl::StatusOr<pid_t> pid =
      Spawn(request, {stdin_pipe->read.get(), stdout_pipe->write.get(), stderr_pipe->write.get()});
  if (!pid.ok()) return pid.status();
  ProcessGroup group(*pid);
  // Only the program may hold these ends, or its outputs would never reach end of file.
  stdin_pipe->read.Reset();
  stdout_pipe->write.Reset();
  stderr_pipe->write.Reset();

  v1::ExecResponse response;
  Exchange exchange(context, request, group, start, std::move(stdin_pipe->write),
                    {"stdout", std::move(stdout_pipe->read), response.mutable_stdout()},
                    {"stderr", std::move(stderr_pipe->read), response.mutable_stderr()});
  if (absl::Status status = exchange.Run(); !status.ok()) return status;
  absl::StatusOr<int> wait_status = group.Reap();
  if (!wait_status.ok()) return wait_status.status();
  SetExitStatus(*wait_status, response);
  response.set_wall_us(
      static_cast<uint64_t>(absl::ToInt64Microseconds(exchange.exited_at() - start)));
  if (request.check()) {
    if (absl::Status failure = CheckExit(request, response); !failure.ok()) return failure;
  }
  return response;
}

}  // namespace

TaskDefinition ExecTaskDefinition() {
  return TypedTask<v1::ExecRequest, v1::ExecResponse>(
      kExecFunction,
      "Runs a program (mpigate.v1.ExecRequest) and returns its exit status and output.", Exec);
}

}  // namespace mpigate::worker
