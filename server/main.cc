// mpigate-server: starts a pool of MPI workers and serves it over gRPC until SIGTERM, SIGINT or
// the StopService RPC.
//
//   mpigate-server [--workers N] [--listen unix:PATH | HOST:PORT] [--endpoint-file PATH]
//                  [--token-file PATH] [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//                  [--resume-grace-s S] [--max-unread-result-mb MB]
//   mpiexec -n N+1 mpigate-server --world ...      (rank 0 the gateway, ranks 1..N the workers)
//
// Works as an MPI singleton (started directly) and under `mpiexec -n 1`, spawning its workers, or
// in world mode without a spawn. Flags may be written with dashes or underscores (--endpoint-file
// or --endpoint_file).
#include <dlfcn.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/access.h"
#include "common/endpoint.h"
#include "common/log.h"
#include "common/loopback_listeners.h"
#include "common/program_files.h"
#include "common/shared_memory.h"
#include "server/gateway_service.h"
#include "server/live_page/live_page.h"
#include "server/memory_release.h"
#include "server/metrics_http.h"
#include "server/mpi_library.h"
#include "server/mpi_pool.h"
#include "server/scheduler.h"
#include "server/stop_signal.h"
#include "worker/exec_task.h"
#include "worker/worker_options.h"

ABSL_FLAG(int, workers, 0,
          "Number of workers. Default: $MPIGATE_MAX_WORKERS, else the MPI universe size, else "
          "the number of cores.");
ABSL_FLAG(std::string, listen, "",
          "Where to serve gRPC: unix:PATH, HOST:PORT or :PORT. Default: "
          "unix:$MPIGATE_RUN_DIR/gateway.sock (run dir default /tmp/mpigate-<uid>).");
ABSL_FLAG(std::string, token_file, "",
          "On TCP: use the token in this file (its first line, 16+ characters of "
          "[A-Za-z0-9._~+/=-]) instead of a random one made at start, e.g. one a batch job shares "
          "with its clients. Every call must carry it (`authorization: Bearer <token>`).");
ABSL_FLAG(std::string, tls_cert, "",
          "Serve TLS with this certificate chain (PEM file); needs --tls-key and a TCP --listen. "
          "Clients verify it against the CA they are given (MPIGATE_TLS_CA).");
ABSL_FLAG(std::string, tls_key, "", "The private key of --tls-cert (PEM file).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "With --tls-cert: require every client to present a certificate signed by this CA "
          "(PEM file), and refuse the handshake otherwise.");
ABSL_FLAG(std::string, endpoint_file, "",
          "Where to write the endpoint clients read. Default: $MPIGATE_ENDPOINT_FILE, else "
          "$MPIGATE_RUN_DIR/endpoint.");
ABSL_FLAG(std::string, worker_binary, "",
          "Path of mpigate-worker. Default: $MPIGATE_WORKER_BINARY, else next to this program.");
ABSL_FLAG(std::string, isolation, "process",
          "Where workers run task code: `process` (a task runner process per worker, so that a "
          "function that crashes fails only its task: ABORTED, and the worker starts a fresh "
          "runner) or `none` (on a thread of the MPI worker itself: a little cheaper per task, "
          "but a crash takes down the whole pool). Gang functions always run in the worker.");
ABSL_FLAG(std::string, runner_binary, "",
          "Path of mpigate-runner, the task runner. Default: $MPIGATE_RUNNER_BINARY, else next to "
          "the worker's executable (in world mode, next to this program).");
ABSL_FLAG(int, max_message_mb, 512,
          "Largest gRPC message accepted or sent, in MiB (1-2047); a larger task or result fails "
          "alone with RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, drain_grace, absl::Seconds(30),
          "On SIGTERM/SIGINT, how long running tasks may take to finish before the workers are "
          "aborted.");
ABSL_FLAG(absl::Duration, bootup_timeout, absl::Seconds(60),
          "How long the workers may take to start, initializer included.");
ABSL_FLAG(bool, world, false,
          "World mode: run as `mpiexec -n N+1 mpigate-server --world`; rank 0 is the gateway and "
          "ranks 1..N are the workers (no spawn).");
ABSL_FLAG(bool, mpi_launcher, false,
          "Print the MPI library this build links (openmpi or mpich) and the mpiexec that goes "
          "with it, on one line, and exit; $MPIGATE_MPIEXEC names another launcher. For scripts "
          "that start the server under mpiexec (deploy/).");
ABSL_FLAG(std::string, initializer, "",
          "A registered function every worker runs once, before any task (mpi4py's initializer). "
          "If it fails, the pool is broken: tasks fail with FAILED_PRECONDITION "
          "\"BrokenExecutor: ...\" and status says why.");
ABSL_FLAG(std::string, initargs, "", "The initializer's input (mpi4py's initargs).");
ABSL_FLAG(std::string, worker_wdir, "", "The workers' working directory (mpi4py's wdir).");
ABSL_FLAG(std::string, task_lib_path, "",
          "Directories (DIR:DIR...) where workers look for --task-lib libraries, before those of "
          "$MPIGATE_TASK_LIB_PATH (mpi4py's path).");
ABSL_FLAG(double, resume_grace_s, 60,
          "How long, in seconds, a session whose stream ended early (its connection dropped, its "
          "client died) keeps running its tasks and keeping their outcomes for a client to resume "
          "it with its token. After that its queued tasks are cancelled, its running ones "
          "interrupted, and everything it held is freed. 0: a session ends with its stream.");
ABSL_FLAG(int64_t, max_sessions, 1024,
          "The most sessions open at once, detached ones included: one more ends the detached "
          "session that has waited longest for its client (its tasks cancelled or interrupted); "
          "if every session has its client, the new one gets RESOURCE_EXHAUSTED naming this "
          "limit, and the sessions open go on. 0: no limit.");
ABSL_FLAG(int64_t, max_queued_tasks_per_session, 1 << 20,
          "The most tasks one session may have waiting for a worker: a task submitted beyond it is "
          "rejected with RESOURCE_EXHAUSTED naming this limit (the session and other sessions go "
          "on, and submits are accepted again as its queue drains). 0: no limit.");
ABSL_FLAG(int, max_unread_result_mb, 1024,
          "The most MiB of outcomes one session may hold for its client: not yet read, or read and "
          "not acknowledged, failures included, with a few hundred bytes reserved for each "
          "unfinished task. A task that does not fit is rejected with RESOURCE_EXHAUSTED, and a "
          "result that would pass it fails with RESOURCE_EXHAUSTED, so a client that stops "
          "reading cannot exhaust the gateway's memory. Keep it well above the largest result: "
          "clients acknowledge in batches (the C++ client every 20 ms or 4 MiB). 0: no limit.");
ABSL_FLAG(int, max_tasks_per_worker, 256,
          "The most tasks a worker holds at once when its tasks are short: one runs, the rest wait "
          "in its backlog, so that it never waits for the gateway between two; how many follows "
          "their run times, within --prefetch-window of work. A task handed to a worker is "
          "running: it can be interrupted, no longer cancelled. 1: one task at a time.");
ABSL_FLAG(absl::Duration, prefetch_window, absl::Milliseconds(1),
          "How much work, by its recent run times, a worker's backlog may hold: a worker running "
          "tasks this long or longer holds one at a time.");
ABSL_FLAG(bool, shared_memory, true,
          "Let clients on this host, as this user, pass large payloads and results through "
          "shared memory objects in /dev/shm instead of the gRPC stream and MPI (the C++ client "
          "does so from 64 KiB). Objects are mode 0600, removed as their tasks and outcomes "
          "end, and whatever is left when the server exits.");
ABSL_FLAG(bool, allow_exec, false,
          "Enable the built-in `exec` task, which runs any program a client names on the workers "
          "as this service's user. Off by default: exec is then refused with PERMISSION_DENIED.");
ABSL_FLAG(std::string, python, "auto",
          "Python tasks (python.call and python.gang, which mpigate.futures submits): `auto` has "
          "the workers load libmpigate_python.so, the Python task runtime, when it is found (next "
          "to this program, or in its build tree) and loads; `on` fails the start if it cannot; "
          "`off` never loads it.");
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://ADDRESS/metrics: PORT (on 127.0.0.1) or HOST:PORT "
          "(0.0.0.0:PORT for every interface; port 0 picks one, shown in the log). Off when "
          "empty. Every scrape must carry `Authorization: Bearer <token>`: see "
          "--metrics_token_file.");
ABSL_FLAG(std::string, metrics_token_file, "",
          "The bearer token a scrape of --metrics_listen must carry, from this file (its first "
          "line, 16+ characters), so that a scraper's credentials file stays valid across "
          "restarts. Default: the service's token on TCP, a fresh random one on a Unix socket. "
          "The endpoint file's metrics_token= line names it either way.");
ABSL_FLAG(double, idle_memory_release_s, 5,
          "Seconds of quiet after which the gateway gives the free heap pages it holds after a "
          "peak (a burst of large tasks, many sessions) back to the system. 0: never.");
ABSL_FLAG(absl::Duration, max_connection_idle, absl::Seconds(60),
          "How long a client connection may carry no call before the service closes it (an "
          "HTTP/2 GOAWAY; a client reconnects for its next call). A session's stream keeps its "
          "connection busy. inf: never.");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(10),
          "How long a new connection may take to open: the TLS handshake, if any, and the "
          "client's HTTP/2 preface and settings. A connection that has not by then is closed.");
ABSL_FLAG(std::string, log_level, "info",
          "The least important events logged to stderr: debug, info, warning or error.");

// Flags that may be given more than once; Abseil flags keep only the last value, so these are
// taken out of the command line before Abseil parses it.
constexpr const char* kRepeatableFlags[] = {"worker_env", "spawn_info", "task_lib"};
constexpr const char* kRepeatableFlagsHelp =
    "  --worker-env NAME=VALUE  set in every worker's environment (repeatable; mpi4py's env)\n"
    "  --spawn-info KEY=VALUE   MPI_Info for MPI_Comm_spawn, e.g. host=a,b or wdir=/x "
    "(repeatable)\n"
    "  --task-lib NAME|PATH     a task library every worker loads at start (repeatable)\n";

namespace mpigate::server {
namespace {

// The values of the repeatable flags, by name.
using RepeatedFlags = std::map<std::string, std::vector<std::string>>;

// Lets users write --endpoint-file for --endpoint_file (Abseil flag names cannot hold dashes), and
// takes the repeatable flags (kRepeatableFlags) out into `repeated`.
std::vector<char*> NormalizeFlags(int argc, char** argv, std::vector<std::string>& storage,
                                  RepeatedFlags& repeated) {
  storage.clear();
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i == 0 || !absl::StartsWith(arg, "--") || arg == "--") {
      storage.push_back(std::move(arg));
      continue;
    }
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<long>(end), '-', '_');
    const std::string name = arg.substr(2, end - 2);
    if (std::find(std::begin(kRepeatableFlags), std::end(kRepeatableFlags), name) ==
        std::end(kRepeatableFlags)) {
      storage.push_back(std::move(arg));
    } else if (end < arg.size()) {
      repeated[name].push_back(arg.substr(end + 1));
    } else if (i + 1 < argc) {
      repeated[name].push_back(argv[++i]);
    } else {
      repeated[name].push_back("");  // Rejected as not KEY=VALUE.
    }
  }
  std::vector<char*> normalized;
  for (std::string& arg : storage) normalized.push_back(arg.data());
  return normalized;
}

// Splits KEY=VALUE entries of --spawn-info.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseSpawnInfo(
    const std::vector<std::string>& entries) {
  std::vector<std::pair<std::string, std::string>> info;
  for (const std::string& entry : entries) {
    const size_t equals = entry.find('=');
    if (equals == 0 || equals == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--spawn-info takes KEY=VALUE, got '", entry, "'"));
    }
    info.emplace_back(entry.substr(0, equals), entry.substr(equals + 1));
  }
  return info;
}

// The worker executable: the flag, $MPIGATE_WORKER_BINARY, or a sibling of this program (an
// installed layout, or Bazel's bazel-bin/server next to bazel-bin/worker; common/program_files.h).
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
  absl::StatusOr<std::string> found = FindProgramFile("worker", "mpigate-worker", X_OK);
  if (!found.ok()) {
    return absl::NotFoundError(absl::StrCat(found.status().message(), "; pass --worker-binary"));
  }
  return found;
}

// The task runner executable for the workers: the flag or $MPIGATE_RUNNER_BINARY, checked here;
// else, in world mode (where the workers are this program), a sibling of this program, and when
// spawning, empty: each worker finds the one next to its own executable.
absl::StatusOr<std::string> RunnerBinaryForWorkers(bool world) {
  std::string explicit_path = absl::GetFlag(FLAGS_runner_binary);
  if (explicit_path.empty() && std::getenv("MPIGATE_RUNNER_BINARY") != nullptr) {
    explicit_path = std::getenv("MPIGATE_RUNNER_BINARY");
  }
  if (explicit_path.empty() && !world) return std::string();
  return worker::FindRunnerBinary(explicit_path);
}

// The health service name (grpc.health.v1) that is SERVING only while the pool is at full size:
// NOT_SERVING while it is degraded (workers lost and not replaced yet; PoolStatus.degraded_reason
// says why). The whole server ("") and mpigate.v1.Gateway stay SERVING meanwhile, since the pool
// still serves with the workers it has: a load balancer keeps sending it work, and a monitor
// that wants the pool whole watches this name.
constexpr char kFullSizeHealthService[] = "mpigate.pool.full_size";

// Announces the pool ready once the workers are up and the service listens, whichever comes last
// (the workers start while the gRPC server does): prints the line scripts wait for and turns the
// health service (grpc.health.v1) to SERVING, unless the pool is broken, and
// kFullSizeHealthService as the pool's size says (Degraded()). Draining() turns every name to
// NOT_SERVING for good.
//
// Thread-safety: Listening() and Draining() are called by the main thread, Booted() and
// Degraded() by the MPI thread.
class Readiness {
 public:
  Readiness(absl::Time launched, int workers) : launched_(launched), workers_(workers) {}

  void Listening(std::string target, std::string endpoint_file,
                 grpc::HealthCheckServiceInterface* health) {
    absl::MutexLock lock(&mu_);
    target_ = std::move(target);
    endpoint_file_ = std::move(endpoint_file);
    health_ = health;
    listening_ = true;
    MaybePrintLocked();
  }

  void Draining() {
    absl::MutexLock lock(&mu_);
    // Every service NOT_SERVING, and later changes ignored: a pool that finishes booting during
    // the drain does not turn it back.
    if (health_ != nullptr) health_->Shutdown();
  }

  // Why the pool is degraded, or "" once it is whole again.
  void Degraded(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    whole_ = reason.empty();
    if (ready_ && broken_.empty()) health_->SetServingStatus(kFullSizeHealthService, whole_);
  }

  void Booted(const v1::PoolStateChange& pool_state) {
    absl::MutexLock lock(&mu_);
    if (pool_state.state() == v1::POOL_STATE_BROKEN) {
      broken_ = absl::StrCat(" (pool broken: ", pool_state.reason(), ")");
    }
    booted_ = true;
    MaybePrintLocked();
  }

 private:
  void MaybePrintLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!listening_ || !booted_) return;
    ready_ = true;
    if (broken_.empty()) {
      health_->SetServingStatus(v1::Gateway::service_full_name(), true);
      health_->SetServingStatus(true);
      health_->SetServingStatus(kFullSizeHealthService, whole_);
    }
    Log(LogLevel::kInfo, "ready: ", workers_, " workers", broken_, ", listening on ", target_);
    // The pid is there because under mpiexec the process to signal is this one: mpiexec itself
    // kills the job at once on SIGTERM, without a drain.
    std::printf(
        "mpigate-server: ready in %.2f s: %d workers%s, listening on %s, endpoint file %s, "
        "pid %d\n",
        absl::ToDoubleSeconds(absl::Now() - launched_), workers_, broken_.c_str(), target_.c_str(),
        endpoint_file_.c_str(), static_cast<int>(getpid()));
    std::fflush(stdout);
  }

  const absl::Time launched_;
  const int workers_;
  absl::Mutex mu_;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  bool booted_ ABSL_GUARDED_BY(mu_) = false;
  // Both of the above: the health service has been told.
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool whole_ ABSL_GUARDED_BY(mu_) = true;
  std::string target_ ABSL_GUARDED_BY(mu_);
  std::string endpoint_file_ ABSL_GUARDED_BY(mu_);
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string broken_ ABSL_GUARDED_BY(mu_);
};

// The library that keeps Open MPI's daemon listening on loopback (common/loopback_listeners.h),
// where common/program_files.h finds mpigate's files.
absl::StatusOr<std::string> FindDaemonPreload() {
  absl::StatusOr<std::string> path = FindProgramFile("common", kLoopbackPreloadLibrary, R_OK);
  if (!path.ok()) return path;
  // LD_PRELOAD splits at these.
  if (path->find_first_of(": ") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot preload ", *path, ": its path holds a colon or a space"));
  }
  return path;
}

// The workers' Python task runtime (worker/python), where common/program_files.h finds
// mpigate's files.
absl::StatusOr<std::string> FindPythonLibrary() {
  return FindProgramFile("worker/python", "libmpigate_python.so", R_OK);
}

// The Python runtime library the workers load, per --python; empty for none. The library is
// loaded here once, and unloaded, so that a host without libpython3.11 finds out now (with
// `auto`, by running without Python tasks) rather than in every worker.
absl::StatusOr<std::string> PythonLibraryForWorkers() {
  const std::string mode = absl::GetFlag(FLAGS_python);
  if (mode == "off") return std::string();
  if (mode != "auto" && mode != "on") {
    return absl::InvalidArgumentError(
        absl::StrCat("--python is `auto`, `on` or `off`, got '", mode, "'"));
  }
  absl::Status problem;
  absl::StatusOr<std::string> path = FindPythonLibrary();
  if (!path.ok()) {
    problem = path.status();
  } else if (void* handle = dlopen(path->c_str(), RTLD_NOW | RTLD_LOCAL); handle == nullptr) {
    problem = absl::FailedPreconditionError(absl::StrCat("cannot load ", *path, ": ", dlerror()));
  } else {
    dlclose(handle);
    return path;
  }
  if (mode == "on") {
    return absl::FailedPreconditionError(absl::StrCat(
        "--python=on: ", problem.message(), "; --python=off runs without Python tasks"));
  }
  Log(LogLevel::kInfo, "no Python tasks: ", problem.message());
  return std::string();
}

// Open MPI refuses to run as root unless told it may, and refuses to place more processes than
// cores unless oversubscription is allowed. The gateway is one more process than the workers and
// mostly idle, so the default pool (one worker per core) needs it. Users' own settings win.
//
// A pool that can only run on this host keeps Open MPI's TCP listeners, and its traffic, on
// loopback (common/loopback_listeners.h), unless the user chose interfaces: returns whether this
// process is to open the loopback scope around MPI_Init.
//
// Only Open MPI reads these. MPICH's Hydra runs as root and oversubscribes without being told, and
// the loopback scope is for Open MPI's listeners: under MPICH nothing is set.
bool PrepareMpiEnvironment(const MpiWorkerPool::Options& options) {
  if constexpr (!kOpenMpi) return false;
  if (geteuid() == 0) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", /*overwrite=*/0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", /*overwrite=*/0);
  }
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", /*overwrite=*/0);
  // Open MPI picks a point-to-point layer by starting each it has and keeping the best: with
  // Debian's build that probing took 0.2 s of every MPI_Init (0.32 s against 0.12 s with ob1
  // named), in the gateway and again in each worker, and ob1 is what it picks here anyway.
  setenv("OMPI_MCA_pml", "ob1", /*overwrite=*/0);
  // By default Open MPI kills every worker, in every job this process spawned, once one ends
  // with a non-zero status or a signal: the pool could not survive the loss of one
  // (docs/worker-loss.md). Off, the others serve on and the pool replaces the lost one.
  // (In world mode mpiexec decides; see MpiWorkerPool::Init.)
  if (!options.world) setenv("OMPI_MCA_orte_abort_on_non_zero_status", "0", /*overwrite=*/0);
  // A world job that outlives a lost rank (mpiexec --mca orte_abort_on_non_zero_status 0): the
  // fence at the start of MPI_Finalize waits for every rank, the dead one too, and never ended
  // when that rank was on another host (tests/multihost/multihost_loss_test.sh). Each rank
  // finalises without it: the gateway and its workers have said goodbye by then, so no message
  // is still on its way. Read by each process at its MPI_Init, so each sets it for itself.
  if (const char* abort = std::getenv("OMPI_MCA_orte_abort_on_non_zero_status");
      options.world && abort != nullptr && absl::string_view(abort) == "0") {
    setenv("OMPI_MCA_async_mpi_finalize", "1", /*overwrite=*/0);
  }

  if (options.world || !OneHostPool(options.spawn_info, std::getenv)) return false;
  for (const char* variable : {"OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_btl_tcp_if_exclude",
                               "OMPI_MCA_oob_tcp_if_include", "OMPI_MCA_oob_tcp_if_exclude"}) {
    if (std::getenv(variable) != nullptr) return false;
  }
  setenv("OMPI_MCA_btl_tcp_if_include", "127.0.0.0/8", /*overwrite=*/1);
  setenv("OMPI_MCA_oob_tcp_if_include", "127.0.0.0/8", /*overwrite=*/1);
  setenv(kLoopbackListenersEnv, "1", /*overwrite=*/1);
  absl::StatusOr<std::string> preload = FindDaemonPreload();
  if (!preload.ok()) {
    Log(LogLevel::kWarning, preload.status().message(),
        ": Open MPI's daemon (orted) will listen on every interface");
    return true;
  }
  // Open MPI's daemon, which MPI_Init starts, inherits this; appended, so that a sanitizer runtime
  // the user preloads stays first.
  const char* current = std::getenv("LD_PRELOAD");
  setenv("LD_PRELOAD",
         current == nullptr || current[0] == '\0' ? preload->c_str()
                                                  : absl::StrCat(current, ":", *preload).c_str(),
         /*overwrite=*/1);
  return true;
}

// Workers and task runners hold several buffers the size of a task's payload at once; backed by
// 4 KiB pages, a fresh 64 MiB buffer costs 16,384 page faults, which on a virtual machine took
// longer than copying it. glibc's malloc backs its large allocations with transparent huge pages
// when told so through GLIBC_TUNABLES, which it reads only at a process's start: set here, the
// processes this one starts (Open MPI's daemon, the workers it spawns, their runners) inherit it.
// Measured: a 64 MiB echo went from 0.14 to 0.20 GB/s. A user's own hugetlb setting wins.
void UseHugePagesInWorkers() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const std::string current = tunables == nullptr ? "" : tunables;
  if (absl::StrContains(current, "glibc.malloc.hugetlb")) return;
  const std::string updated =
      current.empty() ? "glibc.malloc.hugetlb=1" : absl::StrCat(current, ":glibc.malloc.hugetlb=1");
  setenv("GLIBC_TUNABLES", updated.c_str(), /*overwrite=*/1);
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

// Who may call the service, and how its traffic is protected.
struct ServingAccess {
  // Required on every call of the Gateway service; empty on a Unix socket, where the socket's
  // permissions decide.
  std::string token;
  bool tls = false;
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// The token every scrape of the metrics must carry: --metrics_token_file's, else the service's
// (on TCP), else a fresh one. On a Unix socket too: the metrics' TCP port is open to every local
// user, though the socket lets only this one in.
absl::StatusOr<std::string> MetricsToken(const std::string& service_token) {
  const std::string token_file = absl::GetFlag(FLAGS_metrics_token_file);
  if (absl::GetFlag(FLAGS_metrics_listen).empty()) {
    if (!token_file.empty()) {
      return absl::InvalidArgumentError("--metrics_token_file needs --metrics_listen");
    }
    return "";
  }
  if (!token_file.empty()) return ReadTokenFile(token_file);
  if (!service_token.empty()) return service_token;
  return NewToken();
}

// From --token-file and --tls-*: on TCP a token (the file's, else a fresh random one), and TLS if
// asked for. TLS and a token file need TCP.
absl::StatusOr<ServingAccess> MakeServingAccess(bool tcp) {
  ServingAccess access;
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (!tcp && (!token_file.empty() || !cert.empty() || !key.empty() || !client_ca.empty())) {
    return absl::InvalidArgumentError(
        "--token-file and --tls-* apply to TCP only: pass --listen HOST:PORT (on a Unix socket, "
        "the socket's permissions let only this user in)");
  }
  if (!tcp) {
    access.credentials = grpc::InsecureServerCredentials();
    return access;
  }
  absl::StatusOr<std::string> token = token_file.empty() ? NewToken() : ReadTokenFile(token_file);
  if (!token.ok()) return token.status();
  access.token = *std::move(token);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (cert.empty()) {
    if (!client_ca.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
    access.credentials = grpc::InsecureServerCredentials();
    return access;
  }
  grpc::SslServerCredentialsOptions ssl(
      client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  absl::StatusOr<std::string> cert_pem = ReadPem(cert, "--tls-cert");
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPem(key, "--tls-key");
  if (!key_pem.ok()) return key_pem.status();
  ssl.pem_key_cert_pairs.push_back({*std::move(key_pem), *std::move(cert_pem)});
  if (!client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPem(client_ca, "--tls-client-ca");
    if (!ca_pem.ok()) return ca_pem.status();
    ssl.pem_root_certs = *std::move(ca_pem);
  }
  access.tls = true;
  access.credentials = grpc::SslServerCredentials(ssl);
  return access;
}

// Builds the pool's options from the flags.
absl::StatusOr<MpiWorkerPool::Options> PoolOptions(const RepeatedFlags& repeated) {
  MpiWorkerPool::Options options;
  options.workers = absl::GetFlag(FLAGS_workers);
  options.world = absl::GetFlag(FLAGS_world);
  options.bootup_timeout = absl::GetFlag(FLAGS_bootup_timeout);
  options.worker_options.initializer.function = absl::GetFlag(FLAGS_initializer);
  options.worker_options.initializer.input = absl::GetFlag(FLAGS_initargs);
  options.worker_options.wdir = absl::GetFlag(FLAGS_worker_wdir);
  options.worker_options.hello_timeout = options.bootup_timeout;
  const auto values = [&repeated](const std::string& name) {
    const auto it = repeated.find(name);
    return it == repeated.end() ? std::vector<std::string>() : it->second;
  };
  options.worker_options.env = values("worker_env");
  options.worker_options.task_libs = values("task_lib");
  absl::StatusOr<std::string> python_library = PythonLibraryForWorkers();
  if (!python_library.ok()) return python_library.status();
  if (!python_library->empty()) options.worker_options.task_libs.push_back(*python_library);
  options.worker_options.allow_exec = absl::GetFlag(FLAGS_allow_exec);
  const std::string isolation = absl::GetFlag(FLAGS_isolation);
  if (isolation != "process" && isolation != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--isolation is `process` or `none`, got '", isolation, "'"));
  }
  options.worker_options.in_process = isolation == "none";
  if (!options.worker_options.in_process) {
    absl::StatusOr<std::string> runner_binary = RunnerBinaryForWorkers(options.world);
    if (!runner_binary.ok()) return runner_binary.status();
    options.worker_options.runner_binary = *std::move(runner_binary);
  }
  const std::string task_lib_path = absl::GetFlag(FLAGS_task_lib_path);
  for (const char* path :
       {task_lib_path.c_str(), static_cast<const char*>(std::getenv("MPIGATE_TASK_LIB_PATH"))}) {
    if (path == nullptr) continue;
    for (absl::string_view directory : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      options.worker_options.task_lib_path.emplace_back(directory);
    }
  }
  if (absl::Status status = worker::ValidateEnv(options.worker_options.env); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> spawn_info =
      ParseSpawnInfo(values("spawn_info"));
  if (!spawn_info.ok()) return spawn_info.status();
  options.spawn_info = *std::move(spawn_info);
  if (options.world && !options.spawn_info.empty()) {
    return absl::InvalidArgumentError("--spawn-info has no effect in world mode: nothing spawns");
  }
  if (!options.world) {
    absl::StatusOr<std::string> worker_binary = FindWorkerBinary();
    if (!worker_binary.ok()) return worker_binary.status();
    options.worker_binary = *std::move(worker_binary);
  }
  return options;
}

// Runs the service (or, in world mode on ranks 1..N, a worker); returns the exit code.
int Run(const RepeatedFlags& repeated) {
  const auto fail = [](const absl::Status& status) {
    Log(LogLevel::kError, status.ToString());
    return 1;
  };
  absl::StatusOr<MpiWorkerPool::Options> pool_options = PoolOptions(repeated);
  if (!pool_options.ok()) return fail(pool_options.status());
  const bool loopback_listeners = PrepareMpiEnvironment(*pool_options);
  UseHugePagesInWorkers();

  const absl::Time launched = absl::Now();
  pool_options->every_worker_lost = [](const absl::Status& why) {
    StopSignal::Request(std::string(why.message()));
  };
  MpiWorkerPool pool;
  absl::StatusOr<MpiWorkerPool::Started> started = [&] {
    // MPI_Init opens Open MPI's listeners; this process opens none of its own meanwhile.
    ScopedLoopbackListeners loopback(loopback_listeners);
    return pool.Start(*pool_options);
  }();
  if (!started.ok()) return fail(started.status());
  if (started->worker_exit_code.has_value()) return *started->worker_exit_code;

  // From here on this process is the gateway.
  if (absl::Status status = StopSignal::Install(); !status.ok()) return fail(status);
  std::string listen = absl::GetFlag(FLAGS_listen);
  absl::StatusOr<std::string> address =
      ListenAddress(listen.empty() ? DefaultListenAddress() : listen);
  if (!address.ok()) return fail(address.status());
  const std::string socket_path = UnixSocketPath(*address);
  if (!socket_path.empty()) {
    if (absl::Status status = ClaimUnixSocket(socket_path); !status.ok()) return fail(status);
  }
  std::string endpoint_file = absl::GetFlag(FLAGS_endpoint_file);
  if (endpoint_file.empty()) endpoint_file = DefaultEndpointFile();
  absl::StatusOr<ServingAccess> access = MakeServingAccess(socket_path.empty());
  if (!access.ok()) return fail(access.status());
  const absl::StatusOr<std::string> metrics_token = MetricsToken(access->token);
  if (!metrics_token.ok()) return fail(metrics_token.status());

  const double resume_grace_s = absl::GetFlag(FLAGS_resume_grace_s);
  const int max_unread_result_mb = absl::GetFlag(FLAGS_max_unread_result_mb);
  const int64_t max_sessions = absl::GetFlag(FLAGS_max_sessions);
  const int64_t max_queued_tasks_per_session = absl::GetFlag(FLAGS_max_queued_tasks_per_session);
  if (!(resume_grace_s >= 0) || max_unread_result_mb < 0 || max_sessions < 0 ||
      max_queued_tasks_per_session < 0) {
    return fail(
        absl::InvalidArgumentError("--resume_grace_s, --max_unread_result_mb, --max_sessions and "
                                   "--max_queued_tasks_per_session must not be negative"));
  }
  // gRPC's limits are ints: up to 2 GiB less one byte.
  const int max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  if (max_message_mb < 1 || max_message_mb > 2047) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("--max_message_mb must be between 1 and 2047, not ", max_message_mb)));
  }
  const int max_message_bytes = max_message_mb << 20;
  const int max_tasks_per_worker = absl::GetFlag(FLAGS_max_tasks_per_worker);
  if (max_tasks_per_worker < 1 || max_tasks_per_worker > 4096) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "--max_tasks_per_worker must be between 1 and 4096, not ", max_tasks_per_worker)));
  }
  if (absl::GetFlag(FLAGS_prefetch_window) < absl::ZeroDuration()) {
    return fail(absl::InvalidArgumentError("--prefetch_window must not be negative"));
  }
  // gRPC takes both in milliseconds, as ints; INT_MAX is "never".
  const auto channel_milliseconds = [](absl::Duration duration) {
    return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(duration), INT_MAX));
  };
  const absl::Duration max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  const absl::Duration handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  if (max_connection_idle < absl::Milliseconds(1) || handshake_timeout < absl::Milliseconds(1)) {
    return fail(absl::InvalidArgumentError(
        "--max_connection_idle and --handshake_timeout must be at least 1ms"));
  }
  const int max_connection_idle_ms = channel_milliseconds(max_connection_idle);
  const int handshake_timeout_ms = channel_milliseconds(handshake_timeout);
  Scheduler::Options scheduler_options;
  scheduler_options.max_tasks_per_worker = max_tasks_per_worker;
  scheduler_options.prefetch_window = absl::GetFlag(FLAGS_prefetch_window);
  scheduler_options.max_message_bytes = static_cast<uint64_t>(max_message_bytes);
  scheduler_options.workers = started->workers;
  scheduler_options.resume_grace = absl::Seconds(resume_grace_s);
  scheduler_options.max_unread_result_bytes = static_cast<uint64_t>(max_unread_result_mb) << 20;
  scheduler_options.max_sessions = static_cast<size_t>(max_sessions);
  scheduler_options.task_environments = !pool_options->worker_options.in_process;
  scheduler_options.max_queued_tasks_per_session =
      static_cast<size_t>(max_queued_tasks_per_session);
  if (!absl::GetFlag(FLAGS_allow_exec)) {
    scheduler_options.refused_functions[worker::kExecFunction] =
        "exec is off on this service: it runs any program as the service's user; start "
        "mpigate-server with --allow-exec to enable it";
  }
  // Objects left by a gateway that was killed before it could remove them.
  UnlinkOrphanedSharedObjects();
  std::string shared_memory_prefix;
  if (absl::GetFlag(FLAGS_shared_memory)) {
    absl::StatusOr<std::string> prefix = NewSharedObjectPrefix(getpid());
    if (!prefix.ok()) return fail(prefix.status());
    shared_memory_prefix = *std::move(prefix);
  }
  scheduler_options.shared_memory_prefix = shared_memory_prefix;
  // Declared before the scheduler, which hands it objects until it is destroyed.
  SharedObjectReaper reaper;
  scheduler_options.release_shared_object = [&reaper](const std::string& name) {
    reaper.Release(name);
  };
  Scheduler scheduler(std::move(scheduler_options));
  std::optional<IdleMemoryRelease> memory_release;
  if (const double seconds = absl::GetFlag(FLAGS_idle_memory_release_s); seconds > 0) {
    memory_release.emplace(IdleMemoryRelease::Options{.interval = absl::Seconds(seconds)});
  }
  // The workers start while the gRPC server does: spawning them takes most of the start-up.
  Readiness readiness(launched, started->workers);
  pool.Serve(
      &scheduler,
      [&](const absl::Status& booted) {
        if (!booted.ok()) {
          StopSignal::Request(absl::StrCat("the workers could not start: ", booted.message()));
          return;
        }
        readiness.Booted(scheduler.PoolState());
      },
      [&](const std::string& degraded) { readiness.Degraded(degraded); });
  // Before the MPI thread may be left to outlive the scheduler.
  const auto fail_serving = [&](const absl::Status& status) {
    scheduler.StopDispatch();
    pool.Join().IgnoreError();
    return fail(status);
  };
  GatewayService service(
      scheduler, [](std::string reason) { StopSignal::Request(std::move(reason)); },
      shared_memory_prefix.empty() ? "" : SharedMemoryDomain(), access->token);
  // Standard services, for generic tools and load balancers: health checking (NOT_SERVING until
  // the pool is up, and again while draining) and reflection (grpc_cli, grpcurl). Neither takes
  // the token on TCP: health so that load balancers and schedulers can probe, telling only whether
  // the pool serves; reflection because gRPC's library registers it for every server of the
  // process once loaded, and it tells only the schema of proto/, which is public.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(*address, access->credentials, &bound_port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  // Connections that carry nothing (opened and left, or never finishing their handshake) are
  // closed, so that they cannot pile up: a client holds one for its session's stream.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, max_connection_idle_ms);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, handshake_timeout_ms);
  // Pings on every connection, so that one that died silently (a host gone, a cable pulled)
  // ends its streams within half a minute and their sessions detach, ready to be resumed.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  service.RegisterWith(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return fail_serving(absl::UnavailableError(absl::StrCat("cannot listen on ", *address)));
  }
  // The default health service starts out SERVING; the pool is not up yet.
  grpc::HealthCheckServiceInterface* const health = server->GetHealthCheckService();
  health->SetServingStatus(v1::Gateway::service_full_name(), false);
  health->SetServingStatus(kFullSizeHealthService, false);
  health->SetServingStatus(false);
  // gRPC binds the socket with the process's umask; only this user may connect. (Its directory,
  // created 0700, keeps others out in between.)
  if (!socket_path.empty() && chmod(socket_path.c_str(), 0600) != 0) {
    server->Shutdown();
    return fail_serving(absl::UnavailableError(
        absl::StrCat("cannot make ", socket_path, " private: ", std::strerror(errno))));
  }
  // Before the endpoint file is written, which says where the metrics are.
  std::unique_ptr<MetricsHttpServer> metrics;
  if (const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
      !metrics_listen.empty()) {
    // The live page and its JSON beside the metrics, behind the same token.
    absl::flat_hash_map<std::string, HttpResource> resources =
        LivePageResources([&scheduler] { return scheduler.Status(); });
    resources["/metrics"] = {.content_type = "text/plain; version=0.0.4; charset=utf-8",
                             .body = [&scheduler] { return scheduler.PrometheusText(); }};
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started_metrics =
        MetricsHttpServer::Start(metrics_listen, *metrics_token, std::move(resources));
    if (!started_metrics.ok()) {
      server->Shutdown();
      return fail_serving(started_metrics.status());
    }
    metrics = *std::move(started_metrics);
    Log(LogLevel::kInfo, "metrics at http://", metrics->address(),
        "/metrics, the live page at http://", metrics->address(),
        "/?token=... (the endpoint file's metrics_token)");
  }
  const std::string target = ClientTarget(*address, bound_port);
  if (absl::Status status =
          WriteEndpointFile(endpoint_file, {.target = target,
                                            .token = access->token,
                                            .tls = access->tls,
                                            .metrics = metrics ? metrics->address() : "",
                                            .metrics_token = *metrics_token});
      !status.ok()) {
    server->Shutdown();
    return fail_serving(status);
  }

  // Clients may connect from now on; their tasks queue until the workers are up.
  std::printf("mpigate-server: listening on %s, endpoint file %s, starting %d workers, pid %d\n",
              target.c_str(), endpoint_file.c_str(), started->workers, static_cast<int>(getpid()));
  std::fflush(stdout);
  Log(LogLevel::kInfo, "listening on ", target, ", endpoint file ", endpoint_file, ", starting ",
      started->workers, " workers, pid ", getpid());
  readiness.Listening(target, endpoint_file, health);

  const std::string reason = StopSignal::Wait();
  Log(LogLevel::kInfo, "stopping (", reason, "), draining");
  readiness.Draining();
  // Remove the endpoint first so that no new client finds a server that is going away.
  std::remove(endpoint_file.c_str());
  scheduler.Drain(reason);
  const absl::Duration grace = absl::GetFlag(FLAGS_drain_grace);
  if (!scheduler.AwaitNoRunningTasks(absl::Now() + grace)) {
    Log(LogLevel::kWarning, "tasks still running after the drain grace period (",
        absl::FormatDuration(grace), "): failing them");
    scheduler.FailRunning(absl::StrCat("cancelled: the service stopped (", reason,
                                       ") and the task did not finish within the drain grace "
                                       "period of ",
                                       absl::FormatDuration(grace)));
  }
  // Sessions close as their last outcomes are written; anything still open is cancelled at the
  // deadline.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  scheduler.StopDispatch();
  const absl::Status stopped = pool.Join();
  if (!socket_path.empty()) unlink(socket_path.c_str());
  // Results that were never read, and any object whose owner went away unaccounted.
  if (!shared_memory_prefix.empty()) UnlinkSharedObjects(shared_memory_prefix);
  if (!stopped.ok()) return fail(stopped);
  Log(LogLevel::kInfo, "stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace mpigate::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(absl::StrCat(
      "Serves a pool of MPI workers over gRPC.\n"
      "  mpigate-server [--workers N] [--listen unix:PATH|HOST:PORT] [--endpoint-file PATH]\n"
      "  mpiexec -n N+1 mpigate-server --world ...\n"
      "Repeatable flags:\n",
      kRepeatableFlagsHelp));
  // --help lists this file's flags (Abseil's default looks for a file named after the program),
  // and the man page is made from it (packaging/manpage.py).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock would run the debug-only
  // deadlock detector (a process-wide spinlock and a graph lookup per lock) on the hot path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> storage;
  mpigate::server::RepeatedFlags repeated;
  std::vector<char*> args = mpigate::server::NormalizeFlags(argc, argv, storage, repeated);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  mpigate::SetLogProgram("mpigate-server");
  absl::StatusOr<mpigate::LogLevel> log_level =
      mpigate::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!log_level.ok()) {
    mpigate::Log(mpigate::LogLevel::kError, "--log_level: ", log_level.status().message());
    return 2;
  }
  mpigate::SetLogLevel(*log_level);
  if (absl::GetFlag(FLAGS_mpi_launcher)) {
    std::printf("%s %s\n", mpigate::server::kOpenMpi ? "openmpi" : "mpich",
                mpigate::server::MpiexecPath().c_str());
    return 0;
  }
  return mpigate::server::Run(repeated);
}
