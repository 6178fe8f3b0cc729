// mpigate-server: starts a pool of MPI workers and serves it over gRPC until SIGTERM or SIGINT.
//
//   mpigate-server [--workers N] [--listen unix:PATH | HOST:PORT] [--endpoint-file PATH]
//
// Works as an MPI singleton (started directly) and under `mpiexec -n 1`. Flags may be written with
// dashes or underscores (--endpoint-file or --endpoint_file).
#include <grpcpp/grpcpp.h>
#include <linux/limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/endpoint.h"
#include "server/gateway_service.h"
#include "server/mpi_pool.h"
#include "server/scheduler.h"
#include "server/stop_signal.h"

ABSL_FLAG(int, workers, 0,
          "Number of workers. Default: $MPIGATE_MAX_WORKERS, else the MPI universe size, else "
          "the number of cores.");
ABSL_FLAG(std::string, listen, "",
          "Where to serve gRPC: unix:PATH, HOST:PORT or :PORT. Default: "
          "unix:$MPIGATE_RUN_DIR/gateway.sock (run dir default /tmp/mpigate-<uid>).");
ABSL_FLAG(std::string, endpoint_file, "",
          "Where to write the endpoint clients read. Default: $MPIGATE_ENDPOINT_FILE, else "
          "$MPIGATE_RUN_DIR/endpoint.");
ABSL_FLAG(std::string, worker_binary, "",
          "Path of mpigate-worker. Default: $MPIGATE_WORKER_BINARY, else next to this program.");
ABSL_FLAG(int, max_message_mb, 512,
          "Largest gRPC message accepted or sent, in MiB; larger requests fail with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, drain_grace, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long running tasks may take to finish before the workers are "
          "aborted.");
ABSL_FLAG(absl::Duration, bootup_timeout, absl::Seconds(60),
          "How long the workers may take to start.");

namespace mpigate::server {
namespace {

// Lets users write --endpoint-file for --endpoint_file: Abseil flag names cannot hold dashes.
std::vector<char*> NormalizeFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& arg = storage[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "--")) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<long>(end), '-', '_');
  }
  std::vector<char*> normalized;
  for (std::string& arg : storage) normalized.push_back(arg.data());
  return normalized;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string ThisExecutable() {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return length > 0 ? std::string(path, static_cast<size_t>(length)) : std::string();
}

// The worker executable: the flag, $MPIGATE_WORKER_BINARY, or a sibling of this program (an
// installed layout, or Bazel's bazel-bin/server next to bazel-bin/worker).
absl::StatusOr<std::string> FindWorkerBinary() {
  std::string explicit_path = absl::GetFlag(FLAGS_worker_binary);
  if (explicit_path.empty() && std::getenv("MPIGATE_WORKER_BINARY") != nullptr) {
    explicit_path = std::getenv("MPIGATE_WORKER_BINARY");
  }
  if (!explicit_path.empty()) {
    if (access(explicit_path.c_str(), X_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("worker binary ", explicit_path, " is not executable"));
    }
    return explicit_path;
  }
  const std::string here = DirectoryOf(ThisExecutable());
  for (const std::string& candidate :
       {here + "/mpigate-worker", here + "/../worker/mpigate-worker"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot find mpigate-worker next to ", here, "; pass --worker-binary"));
}

// Open MPI refuses to run as root unless told it may, and refuses to place more processes than
// cores unless oversubscription is allowed. The gateway is one more process than the workers and
// mostly idle, so the default pool (one worker per core) needs it. Users' own settings win.
void PrepareMpiEnvironment() {
  if (geteuid() == 0) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", /*overwrite=*/0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", /*overwrite=*/0);
  }
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", /*overwrite=*/0);
}

// Makes `path` free for a new Unix socket: fails if a live server listens there, removes a stale
// socket file left by one that died.
absl::Status ClaimUnixSocket(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path is longer than ",
                                                   sizeof(address.sun_path) - 1, " bytes: ", path));
  }
  if (absl::Status status = MakeDirectories(DirectoryOf(path)); !status.ok()) return status;
  if (access(path.c_str(), F_OK) != 0) return absl::OkStatus();
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool live =
      fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  if (fd >= 0) close(fd);
  if (live) {
    return absl::FailedPreconditionError(
        absl::StrCat("another server is already listening on ", path));
  }
  if (unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove stale socket ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// The target clients should dial for a server listening on `address` (port as bound).
std::string ClientTarget(const std::string& address, int bound_port) {
  if (absl::StartsWith(address, "unix:")) return address;
  std::string host = address.substr(0, address.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? name : "localhost";
  }
  return absl::StrCat(host, ":", bound_port);
}

absl::Status Serve() {
  if (absl::Status status = StopSignal::Install(); !status.ok()) return status;
  PrepareMpiEnvironment();

  std::string listen = absl::GetFlag(FLAGS_listen);
  absl::StatusOr<std::string> address =
      ListenAddress(listen.empty() ? DefaultListenAddress() : listen);
  if (!address.ok()) return address.status();
  const std::string socket_path = UnixSocketPath(*address);
  if (!socket_path.empty()) {
    if (absl::Status status = ClaimUnixSocket(socket_path); !status.ok()) return status;
  }
  std::string endpoint_file = absl::GetFlag(FLAGS_endpoint_file);
  if (endpoint_file.empty()) endpoint_file = DefaultEndpointFile();
  absl::StatusOr<std::string> worker_binary = FindWorkerBinary();
  if (!worker_binary.ok()) return worker_binary.status();

  const absl::Time launched = absl::Now();
  MpiWorkerPool pool;
  MpiWorkerPool::Options pool_options;
  pool_options.workers = absl::GetFlag(FLAGS_workers);
  pool_options.worker_binary = *worker_binary;
  pool_options.bootup_timeout = absl::GetFlag(FLAGS_bootup_timeout);
  pool_options.stop_timeout = absl::GetFlag(FLAGS_drain_grace);
  absl::StatusOr<MpiWorkerPool::PoolInfo> info = pool.Start(pool_options);
  if (!info.ok()) return info.status();

  Scheduler::Options scheduler_options;
  scheduler_options.workers = info->workers;
  scheduler_options.functions = info->functions;
  Scheduler scheduler(std::move(scheduler_options));
  pool.Serve(&scheduler);

  GatewayService service(scheduler);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(*address, grpc::InsecureServerCredentials(), &bound_port);
  const int max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  absl::Status status;
  if (server == nullptr) {
    status = absl::UnavailableError(absl::StrCat("cannot listen on ", *address));
  } else {
    const std::string target = ClientTarget(*address, bound_port);
    status = WriteEndpointFile(endpoint_file, target);
    if (status.ok()) {
      // Scripts wait for this line. The pid is there because under mpiexec the process to signal
      // is this one: mpiexec itself kills the job at once on SIGTERM, without a drain.
      std::printf(
          "mpigate-server: ready in %.2f s: %d workers, listening on %s, endpoint file %s, "
          "pid %d\n",
          absl::ToDoubleSeconds(absl::Now() - launched), info->workers, target.c_str(),
          endpoint_file.c_str(), static_cast<int>(getpid()));
      std::fflush(stdout);
      const std::string reason = StopSignal::Wait();
      std::fprintf(stderr, "mpigate-server: %s received, draining\n", reason.c_str());
      // Remove the endpoint first so that no new client finds a server that is going away.
      std::remove(endpoint_file.c_str());
    }
  }
  scheduler.Drain("the server is stopping");
  if (!scheduler.AwaitNoRunningTasks(absl::Now() + absl::GetFlag(FLAGS_drain_grace))) {
    std::fprintf(stderr, "mpigate-server: tasks still running after the drain grace period\n");
  }
  // Sessions close as their last tasks end; anything still open is cancelled at the deadline.
  if (server != nullptr) server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  scheduler.StopDispatch();
  if (absl::Status stopped = pool.Join(); status.ok()) status = stopped;
  if (!socket_path.empty()) unlink(socket_path.c_str());
  return status;
}

}  // namespace
}  // namespace mpigate::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves a pool of MPI workers over gRPC.\n"
      "  mpigate-server [--workers N] [--listen unix:PATH|HOST:PORT] [--endpoint-file PATH]");
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock would run the debug-only
  // deadlock detector (a process-wide spinlock and a graph lookup per lock) on the hot path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> storage;
  std::vector<char*> args = mpigate::server::NormalizeFlagNames(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  const absl::Status status = mpigate::server::Serve();
  if (!status.ok()) {
    std::fprintf(stderr, "mpigate-server: %s\n", status.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "mpigate-server: stopped cleanly\n");
  return 0;
}
