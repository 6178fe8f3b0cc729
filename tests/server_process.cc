#include "tests/server_process.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/endpoint.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/process_info.h"

extern char** environ;

namespace mpigate::testing {
namespace {

// Far longer than any test's server takes to start or to stop, even instrumented on a loaded
// machine: past them, the test fails with what the server printed instead of outlasting its
// timeout.
constexpr absl::Duration kStartPatience = absl::Minutes(3);
constexpr absl::Duration kStopPatience = absl::Minutes(3);

constexpr bool kOpenMpi = std::string_view(MPIGATE_MPI_FAMILY) == "openmpi";
constexpr bool kMpiCanSpawn = kOpenMpi;

std::string ReadAll(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(n));
  return text;
}

// Reads lines from `fd` into `seen` until one holds `needle` (true), the end of the stream or
// `deadline` (false).
bool ReadUntil(int fd, absl::string_view needle, absl::Time deadline, std::string& seen) {
  std::string line;
  while (true) {
    pollfd readable = {fd, POLLIN, 0};
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    const int ready = poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    char c;
    if (ready <= 0 || read(fd, &c, 1) != 1) return false;
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    seen += line + "\n";
    if (absl::StrContains(line, needle)) return true;
    line.clear();
  }
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  return -1;
}

}  // namespace

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return relative;
  return absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "mpigate", "/", relative);
}

absl::StatusOr<CommandResult> RunCommand(const std::string& command) {
  // One pipe for both stdout and stderr, read to its end; then the shell is waited for.
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDERR_FILENO);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    return absl::InternalError(absl::StrCat("cannot start /bin/sh: ", std::strerror(rc)));
  }
  CommandResult result;
  result.output = ReadAll(out_pipe[0]);
  close(out_pipe[0]);
  int wait_status = 0;
  if (waitpid(pid, &wait_status, 0) != pid) {
    return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (!WIFEXITED(wait_status)) {
    return absl::InternalError(absl::StrCat("`", command, "` did not exit normally (signal ",
                                            WTERMSIG(wait_status), "):\n", result.output));
  }
  result.exit_code = WEXITSTATUS(wait_status);
  return result;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Stop(SIGKILL).IgnoreError();
}

absl::Status ServerProcess::Start(const ServerOptions& options) {
  // Orphaned descendants (the singleton's MPI daemon, workers) are reparented to this process.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return absl::InternalError(absl::StrCat("prctl: ", std::strerror(errno)));
  }
  // A short directory: Unix socket paths are limited to 107 bytes.
  char dir_template[] = "/tmp/mpigate-test-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp failed");
  dir_ = dir_template;
  target_ = absl::StrCat("unix:", dir_, "/s.sock");
  endpoint_file_ = absl::StrCat(dir_, "/endpoint");

  // Debian's MPICH 4.0 cannot spawn processes (server/mpi_library.h): there a pool runs in world
  // mode, so the pool a test would spawn starts that way, with the same workers.
  const bool world = options.world || !kMpiCanSpawn;
  world_ = world;
  std::vector<std::string> args;
  if (options.under_mpiexec || world) {
    // The build's own launcher (//bazel:mpi_launcher), not whatever `mpiexec` is on PATH.
    args = {MPIGATE_MPIEXEC, "-n", absl::StrCat(world ? options.workers + 1 : 1)};
    // Open MPI refuses more processes than cores, and root, unless told; Hydra (MPICH) does not.
    if (kOpenMpi) {
      args.push_back("--oversubscribe");
      if (geteuid() == 0) args.push_back("--allow-run-as-root");
    }
  }
  args.push_back(RunfilePath("server/mpigate-server"));
  args.insert(args.end(),
              {absl::StrCat("--workers=", options.workers), absl::StrCat("--listen=", target_),
               absl::StrCat("--endpoint-file=", endpoint_file_),
               absl::StrCat("--worker-binary=", RunfilePath("worker/mpigate-worker"))});
  if (world) args.push_back("--world");
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  // stdout is a pipe to read the ready line from; stderr goes to a file, so that however much the
  // server and its workers print, nothing blocks on a full pipe.
  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  stderr_file_ = absl::StrCat(dir_, "/stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int rc = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  if (rc != 0) {
    pid_ = -1;
    return absl::InternalError(absl::StrCat("cannot start ", args[0], ": ", std::strerror(rc)));
  }

  std::string seen;
  stdout_fd_ = out_pipe[0];
  const bool ready = ReadUntil(
      stdout_fd_, options.await_ready ? "mpigate-server: ready" : "mpigate-server: listening",
      absl::Now() + kStartPatience, seen);
  const size_t pid_at = seen.rfind(", pid ");
  if (!ready || pid_at == std::string::npos ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(seen.substr(pid_at + 6)), &server_pid_)) {
    absl::StatusOr<ServerExit> exit = Stop(SIGKILL);
    return absl::InternalError(absl::StrCat("mpigate-server did not become ready: ", seen,
                                            exit.ok() ? exit->stderr_text : ""));
  }
  // Written before the listening line; it says where the server listens if a flag moved it.
  absl::StatusOr<Endpoint> endpoint = ReadEndpointFile(endpoint_file_);
  if (!endpoint.ok()) return endpoint.status();
  target_ = endpoint->target;
  token_ = endpoint->token;
  metrics_address_ = endpoint->metrics;
  metrics_token_ = endpoint->metrics_token;
  return absl::OkStatus();
}

std::vector<pid_t> ServerProcess::WorkerPids() const {
  std::vector<pid_t> workers = DescendantsNamed(pool_root(), worker_process_name());
  workers.erase(std::remove(workers.begin(), workers.end(), server_pid_), workers.end());
  return workers;
}

absl::StatusOr<ServerExit> ServerProcess::Stop(int signal_number) {
  if (pid_ <= 0) return absl::FailedPreconditionError("the server is not running");
  ServerExit exit;
  // A stop that hangs fails the test that asked for it, with what the server printed, instead
  // of outlasting the test's timeout: past its patience, every process below this one is killed,
  // which ends the waits below.
  // What they were doing then goes in the failure message (read after the join).
  absl::Notification ended;
  std::atomic<bool> overdue{false};
  std::string overdue_processes;
  std::thread watchdog([&ended, &overdue, &overdue_processes] {
    if (ended.WaitForNotificationWithTimeout(kStopPatience)) return;
    overdue = true;
    std::vector<pid_t> below = ProcessTree(getpid());
    below.erase(below.begin());
    overdue_processes = DescribeProcesses(below);
    for (const pid_t pid : below) kill(pid, SIGKILL);
  });
  // Signal the server itself: under mpiexec, a SIGTERM to mpiexec kills the job without a drain.
  if (signal_number != 0) kill(server_pid_ > 0 ? server_pid_ : pid_, signal_number);
  int wait_status = 0;
  const bool server_ended = waitpid(pid_, &wait_status, 0) == pid_;
  const int wait_errno = errno;
  if (server_ended) {
    pid_ = -1;
    server_pid_ = -1;
    exit.exit_code = ExitCode(wait_status);
    close(stdout_fd_);
    stdout_fd_ = -1;
    // Every descendant still alive is now our child: wait for each to end on its own.
    while (waitpid(-1, &wait_status, 0) > 0) ++exit.descendants_reaped;
  }
  ended.Notify();
  watchdog.join();
  if (!server_ended) {
    return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(wait_errno)));
  }
  if (const int fd = open(stderr_file_.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    exit.stderr_text = ReadAll(fd);
    close(fd);
  }
  std::remove(stderr_file_.c_str());
  std::remove(absl::StrCat(dir_, "/s.sock").c_str());
  std::remove(endpoint_file_.c_str());
  rmdir(dir_.c_str());
  if (overdue) {
    return absl::DeadlineExceededError(
        absl::StrCat("mpigate-server and the processes below it had not all ended ",
                     absl::FormatDuration(kStopPatience), " after signal ", signal_number,
                     "; they were killed. Those left then:", overdue_processes, "\nIts stderr:\n",
                     exit.stderr_text));
  }
  return exit;
}

absl::Status AwaitPoolStatus(const std::string& target,
                             const std::function<bool(const v1::PoolStatus&)>& done,
                             absl::Duration patience) {
  auto stub = v1::Gateway::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  const absl::Time deadline = absl::Now() + patience;
  v1::PoolStatus status;
  do {
    grpc::ClientContext context;
    status.Clear();
    const grpc::Status call = stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status);
    if (!call.ok()) return absl::UnavailableError(call.error_message());
    if (done(status)) return absl::OkStatus();
  } while (absl::Now() < deadline);
  return absl::DeadlineExceededError(
      absl::StrCat("the pool status never showed what the test waited for; the last: ",
                   status.ShortDebugString()));
}

absl::Status AwaitBusyWorkers(const std::string& target, uint32_t busy, absl::Duration patience) {
  return AwaitPoolStatus(
      target, [busy](const v1::PoolStatus& status) { return status.busy_workers() == busy; },
      patience);
}

}  // namespace mpigate::testing
