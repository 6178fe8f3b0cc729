#include "tests/cli/cli_process.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/server_process.h"

extern char** environ;

namespace mpigate::testing {
namespace {

absl::Status ErrnoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// The child's three streams, both ends of each; whatever is still open is closed when the run
// ends, whichever way.
struct Streams {
  ~Streams() {
    for (int fd : {stdin_read, stdin_write, stdout_read, stdout_write, stderr_read, stderr_write}) {
      if (fd >= 0) close(fd);
    }
  }
  int stdin_read = -1, stdin_write = -1;
  int stdout_read = -1, stdout_write = -1;
  int stderr_read = -1, stderr_write = -1;
};

}  // namespace

std::string MpigateBinary() { return RunfilePath("cli/mpigate"); }

std::vector<std::string> ChildEnvironment(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    bool changed = false;
    for (const auto& [name, value] : changes) {
      changed = changed || absl::StartsWith(*entry, absl::StrCat(name, "="));
    }
    if (!changed) env.emplace_back(*entry);
  }
  for (const auto& [name, value] : changes) {
    if (value.has_value()) env.push_back(absl::StrCat(name, "=", *value));
  }
  return env;
}

absl::StatusOr<CliResult> RunMpigate(const std::vector<std::string>& args,
                                     const CliOptions& options) {
  Streams streams;
  int& stdin_read = streams.stdin_read;
  int& stdin_write = streams.stdin_write;
  int& stdout_read = streams.stdout_read;
  int& stdout_write = streams.stdout_write;
  int& stderr_read = streams.stderr_read;
  int& stderr_write = streams.stderr_write;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  stdin_read = pipe_fds[0];
  stdin_write = pipe_fds[1];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  stdout_read = pipe_fds[0];
  stdout_write = pipe_fds[1];
  if (options.stderr_on_terminal) {
    struct winsize size = {};
    size.ws_row = 24;
    size.ws_col = static_cast<unsigned short>(options.terminal_columns);
    if (openpty(&stderr_read, &stderr_write, nullptr, nullptr, &size) != 0) {
      return ErrnoError("openpty");
    }
    fcntl(stderr_read, F_SETFD, FD_CLOEXEC);
    fcntl(stderr_write, F_SETFD, FD_CLOEXEC);
  } else {
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
    stderr_read = pipe_fds[0];
    stderr_write = pipe_fds[1];
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdin_read, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(
      &actions,
      options.stderr_on_terminal && options.stdout_on_terminal ? stderr_write : stdout_write,
      STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, stderr_write, STDERR_FILENO);
  // This process ignores SIGPIPE (so that a child that exits without reading its stdin does not
  // kill the test); the child gets the default back, as from a shell.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> argv_strings = {MpigateBinary()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = ChildEnvironment(options.env);
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);

  signal(SIGPIPE, SIG_IGN);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
  }
  // Only the child holds these ends now: end of file arrives when it exits.
  for (int* fd : {&stdin_read, &stdout_write, &stderr_write}) {
    close(*fd);
    *fd = -1;
  }

  // Joined before the child is reaped, so that its pid still names it when the callback signals.
  std::thread watcher;
  if (options.while_running) watcher = std::thread([&options, pid] { options.while_running(pid); });
  struct JoinWatcher {
    ~JoinWatcher() {
      if (thread.joinable()) thread.join();
    }
    std::thread& thread;
  } join_watcher{watcher};

  CliResult result;
  size_t stdin_written = 0;
  if (options.stdin_text.empty()) {
    close(stdin_write);
    stdin_write = -1;
  } else {
    fcntl(stdin_write, F_SETFL, O_NONBLOCK);
  }
  while (stdout_read >= 0 || stderr_read >= 0) {
    std::vector<pollfd> polled;
    if (stdin_write >= 0) polled.push_back({stdin_write, POLLOUT, 0});
    if (stdout_read >= 0) polled.push_back({stdout_read, POLLIN, 0});
    if (stderr_read >= 0) polled.push_back({stderr_read, POLLIN, 0});
    if (poll(polled.data(), polled.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll");
    }
    for (const pollfd& entry : polled) {
      if (entry.revents == 0) continue;
      if (entry.fd == stdin_write) {
        const ssize_t n = write(stdin_write, options.stdin_text.data() + stdin_written,
                                options.stdin_text.size() - stdin_written);
        if (n > 0) stdin_written += static_cast<size_t>(n);
        // EPIPE: the child exits without reading all of it, which is its right.
        if ((n < 0 && errno != EAGAIN) || stdin_written == options.stdin_text.size()) {
          close(stdin_write);
          stdin_write = -1;
        }
        continue;
      }
      int& fd = entry.fd == stdout_read ? stdout_read : stderr_read;
      std::string& text = entry.fd == stdout_read ? result.stdout_text : result.stderr_text;
      char buffer[1 << 16];
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        text.append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        // End of file; a terminal's master side reads EIO once every slave is closed.
        close(fd);
        fd = -1;
      }
    }
  }
  if (watcher.joinable()) watcher.join();
  int wait_status = 0;
  if (waitpid(pid, &wait_status, 0) != pid) return ErrnoError("waitpid");
  result.exit_code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -WTERMSIG(wait_status);
  return result;
}

}  // namespace mpigate::testing
