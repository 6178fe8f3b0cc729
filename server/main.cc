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
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/loopback_listeners.h"
#include "common/memory_release.h"
#include "common/shared_memory.h"
#include "server/gateway_service.h"
#include "server/live_page/live_page.h"
#include "server/metrics_http.h"
#include "server/mpi_library.h"
#include "server/mpi_pool.h"
#include "server/pool_launch.h"
#include "server/readiness.h"
#include "server/scheduler.h"
#include "server/server_config.h"
#include "server/serving_access.h"
#include "server/stop_signal.h"

// The flags' defaults: ServerFlags holds them, for MakeServerConfig and its tests.
static const mpigate::server::ServerFlags& Defaults() {
  static const auto* const defaults = new mpigate::server::ServerFlags();
  return *defaults;
}

ABSL_FLAG(int, workers, Defaults().workers,
          "Number of workers. Default: $MPIGATE_MAX_WORKERS, else the MPI universe size, else "
          "the number of cores.");
ABSL_FLAG(std::string, listen, Defaults().listen,
          "Where to serve gRPC: unix:PATH, HOST:PORT or :PORT. Default: "
          "unix:$MPIGATE_RUN_DIR/gateway.sock (run dir default /tmp/mpigate-<uid>).");
ABSL_FLAG(std::string, token_file, Defaults().token_file,
          "On TCP: use the token in this file (its first line, 16+ characters of "
          "[A-Za-z0-9._~+/=-]) instead of a random one made at start, e.g. one a batch job shares "
          "with its clients. Every call must carry it (`authorization: Bearer <token>`).");
ABSL_FLAG(std::string, tls_cert, Defaults().tls_cert,
          "Serve TLS with this certificate chain (PEM file); needs --tls-key and a TCP --listen. "
          "Clients verify it against the CA they are given (MPIGATE_TLS_CA).");
ABSL_FLAG(std::string, tls_key, Defaults().tls_key, "The private key of --tls-cert (PEM file).");
ABSL_FLAG(std::string, tls_client_ca, Defaults().tls_client_ca,
          "With --tls-cert: require every client to present a certificate signed by this CA "
          "(PEM file), and refuse the handshake otherwise.");
ABSL_FLAG(std::string, endpoint_file, Defaults().endpoint_file,
          "Where to write the endpoint clients read. Default: $MPIGATE_ENDPOINT_FILE, else "
          "$MPIGATE_RUN_DIR/endpoint.");
ABSL_FLAG(std::string, worker_binary, Defaults().worker_binary,
          "Path of mpigate-worker. Default: $MPIGATE_WORKER_BINARY, else next to this program.");
ABSL_FLAG(std::string, isolation, Defaults().isolation,
          "Where workers run task code: `process` (a task runner process per worker, so that a "
          "function that crashes fails only its task: ABORTED, and the worker starts a fresh "
          "runner) or `none` (on a thread of the MPI worker itself: a little cheaper per task, "
          "but a crash takes down the whole pool). Gang functions always run in the worker.");
ABSL_FLAG(std::string, runner_binary, Defaults().runner_binary,
          "Path of mpigate-runner, the task runner. Default: $MPIGATE_RUNNER_BINARY, else next to "
          "the worker's executable (in world mode, next to this program).");
ABSL_FLAG(int, max_message_mb, Defaults().max_message_mb,
          "Largest gRPC message accepted or sent, in MiB (1-2047); a larger task or result fails "
          "alone with RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, drain_grace, Defaults().drain_grace,
          "On SIGTERM/SIGINT, how long running tasks may take to finish before the workers are "
          "aborted.");
ABSL_FLAG(absl::Duration, bootup_timeout, Defaults().bootup_timeout,
          "How long the workers may take to start, initializer included.");
ABSL_FLAG(bool, world, Defaults().world,
          "World mode: run as `mpiexec -n N+1 mpigate-server --world`; rank 0 is the gateway and "
          "ranks 1..N are the workers (no spawn).");
ABSL_FLAG(bool, mpi_launcher, false,
          "Print the MPI library this build links (openmpi or mpich) and the mpiexec that goes "
          "with it, on one line, and exit; $MPIGATE_MPIEXEC names another launcher. For scripts "
          "that start the server under mpiexec (deploy/).");
ABSL_FLAG(std::string, initializer, Defaults().initializer,
          "A registered function every worker runs once, before any task (mpi4py's initializer). "
          "If it fails, the pool is broken: tasks fail with FAILED_PRECONDITION "
          "\"BrokenExecutor: ...\" and status says why.");
ABSL_FLAG(std::string, initargs, Defaults().initargs,
          "The initializer's input (mpi4py's initargs).");
ABSL_FLAG(std::string, worker_wdir, Defaults().worker_wdir,
          "The workers' working directory (mpi4py's wdir).");
ABSL_FLAG(std::string, task_lib_path, Defaults().task_lib_path,
          "Directories (DIR:DIR...) where workers look for --task-lib libraries, before those of "
          "$MPIGATE_TASK_LIB_PATH (mpi4py's path).");
ABSL_FLAG(double, resume_grace_s, Defaults().resume_grace_s,
          "How long, in seconds, a session whose stream ended early (its connection dropped, its "
          "client died) keeps running its tasks and keeping their outcomes for a client to resume "
          "it with its token. After that its queued tasks are cancelled, its running ones "
          "interrupted, and everything it held is freed. 0: a session ends with its stream.");
ABSL_FLAG(int64_t, max_sessions, Defaults().max_sessions,
          "The most sessions open at once, detached ones included: one more ends the detached "
          "session that has waited longest for its client (its tasks cancelled or interrupted); "
          "if every session has its client, the new one gets RESOURCE_EXHAUSTED naming this "
          "limit, and the sessions open go on. 0: no limit.");
ABSL_FLAG(int64_t, max_queued_tasks_per_session, Defaults().max_queued_tasks_per_session,
          "The most tasks one session may have waiting for a worker: a task submitted beyond it is "
          "rejected with RESOURCE_EXHAUSTED naming this limit (the session and other sessions go "
          "on, and submits are accepted again as its queue drains). 0: no limit.");
ABSL_FLAG(int, max_unread_result_mb, Defaults().max_unread_result_mb,
          "The most MiB of outcomes one session may hold for its client: not yet read, or read and "
          "not acknowledged, failures included, with a few hundred bytes reserved for each "
          "unfinished task. A task that does not fit is rejected with RESOURCE_EXHAUSTED, and a "
          "result that would pass it fails with RESOURCE_EXHAUSTED, so a client that stops "
          "reading cannot exhaust the gateway's memory. Keep it well above the largest result: "
          "clients acknowledge in batches (the C++ client every 20 ms or 4 MiB). 0: no limit.");
ABSL_FLAG(int, max_tasks_per_worker, Defaults().max_tasks_per_worker,
          "The most tasks a worker holds at once when its tasks are short: one runs, the rest wait "
          "in its backlog, so that it never waits for the gateway between two; how many follows "
          "their run times, within --prefetch-window of work. A task handed to a worker is "
          "running: it can be interrupted, no longer cancelled. 1: one task at a time.");
ABSL_FLAG(absl::Duration, prefetch_window, Defaults().prefetch_window,
          "How much work, by its recent run times, a worker's backlog may hold: a worker running "
          "tasks this long or longer holds one at a time.");
ABSL_FLAG(bool, shared_memory, Defaults().shared_memory,
          "Let clients on this host, as this user, pass large payloads and results through "
          "shared memory objects in /dev/shm instead of the gRPC stream and MPI (the C++ client "
          "does so from 64 KiB). Objects are mode 0600, removed as their tasks and outcomes "
          "end, and whatever is left when the server exits.");
ABSL_FLAG(bool, allow_exec, Defaults().allow_exec,
          "Enable the built-in `exec` task, which runs any program a client names on the workers "
          "as this service's user. Off by default: exec is then refused with PERMISSION_DENIED.");
ABSL_FLAG(std::string, python, Defaults().python,
          "Python tasks (python.call and python.gang, which mpigate.futures submits): `auto` has "
          "the workers load libmpigate_python.so, the Python task runtime, when it is found (next "
          "to this program, or in its build tree) and loads; `on` fails the start if it cannot; "
          "`off` never loads it.");
ABSL_FLAG(std::string, metrics_listen, Defaults().metrics_listen,
          "Serve Prometheus metrics at http://ADDRESS/metrics: PORT (on 127.0.0.1) or HOST:PORT "
          "(0.0.0.0:PORT for every interface; port 0 picks one, shown in the log). Off when "
          "empty. Every scrape must carry `Authorization: Bearer <token>`: see "
          "--metrics_token_file.");
ABSL_FLAG(std::string, metrics_token_file, Defaults().metrics_token_file,
          "The bearer token a scrape of --metrics_listen must carry, from this file (its first "
          "line, 16+ characters), so that a scraper's credentials file stays valid across "
          "restarts. Default: the service's token on TCP, a fresh random one on a Unix socket. "
          "The endpoint file's metrics_token= line names it either way.");
ABSL_FLAG(double, idle_memory_release_s, Defaults().idle_memory_release_s,
          "Seconds of quiet after which the gateway gives the free heap pages it holds after a "
          "peak (a burst of large tasks, many sessions) back to the system. 0: never.");
ABSL_FLAG(absl::Duration, max_connection_idle, Defaults().max_connection_idle,
          "How long a client connection may carry no call before the service closes it (an "
          "HTTP/2 GOAWAY; a client reconnects for its next call). A session's stream keeps its "
          "connection busy. inf: never.");
ABSL_FLAG(absl::Duration, handshake_timeout, Defaults().handshake_timeout,
          "How long a new connection may take to open: the TLS handshake, if any, and the "
          "client's HTTP/2 preface and settings. A connection that has not by then is closed.");
ABSL_FLAG(std::string, log_level, "info",
          "The least important events logged to stderr: debug, info, warning or error.");

namespace mpigate::server {
namespace {

ServerFlags FlagValues(const SplitArgs& split) {
  ServerFlags flags;
  flags.workers = absl::GetFlag(FLAGS_workers);
  flags.listen = absl::GetFlag(FLAGS_listen);
  flags.token_file = absl::GetFlag(FLAGS_token_file);
  flags.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  flags.tls_key = absl::GetFlag(FLAGS_tls_key);
  flags.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  flags.endpoint_file = absl::GetFlag(FLAGS_endpoint_file);
  flags.worker_binary = absl::GetFlag(FLAGS_worker_binary);
  flags.isolation = absl::GetFlag(FLAGS_isolation);
  flags.runner_binary = absl::GetFlag(FLAGS_runner_binary);
  flags.max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  flags.drain_grace = absl::GetFlag(FLAGS_drain_grace);
  flags.bootup_timeout = absl::GetFlag(FLAGS_bootup_timeout);
  flags.world = absl::GetFlag(FLAGS_world);
  flags.initializer = absl::GetFlag(FLAGS_initializer);
  flags.initargs = absl::GetFlag(FLAGS_initargs);
  flags.worker_wdir = absl::GetFlag(FLAGS_worker_wdir);
  flags.task_lib_path = absl::GetFlag(FLAGS_task_lib_path);
  flags.resume_grace_s = absl::GetFlag(FLAGS_resume_grace_s);
  flags.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  flags.max_queued_tasks_per_session = absl::GetFlag(FLAGS_max_queued_tasks_per_session);
  flags.max_unread_result_mb = absl::GetFlag(FLAGS_max_unread_result_mb);
  flags.max_tasks_per_worker = absl::GetFlag(FLAGS_max_tasks_per_worker);
  flags.prefetch_window = absl::GetFlag(FLAGS_prefetch_window);
  flags.shared_memory = absl::GetFlag(FLAGS_shared_memory);
  flags.allow_exec = absl::GetFlag(FLAGS_allow_exec);
  flags.python = absl::GetFlag(FLAGS_python);
  flags.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  flags.metrics_token_file = absl::GetFlag(FLAGS_metrics_token_file);
  flags.idle_memory_release_s = absl::GetFlag(FLAGS_idle_memory_release_s);
  flags.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  flags.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  flags.worker_env = split.worker_env;
  flags.spawn_info = split.spawn_info;
  flags.task_lib = split.task_lib;
  return flags;
}

// Builds and starts the gRPC server with `service`, health checking and reflection; null if it
// cannot listen. Sets `bound_port`.
std::unique_ptr<grpc::Server> StartGrpcServer(const ServerConfig& config,
                                              const ServingAccess& access, GatewayService& service,
                                              int& bound_port) {
  // Standard services, for generic tools and load balancers: health checking (NOT_SERVING until
  // the pool is up, and again while draining) and reflection (grpc_cli, grpcurl). Neither takes
  // the token on TCP: health so that load balancers and schedulers can probe, telling only whether
  // the pool serves; reflection because gRPC's library registers it for every server of the
  // process once loaded, and it tells only the schema of proto/, which is public.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address, access.credentials, &bound_port);
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  // Connections that carry nothing (opened and left, or never finishing their handshake) are
  // closed, so that they cannot pile up: a client holds one for its session's stream.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, config.max_connection_idle_ms);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, config.handshake_timeout_ms);
  // Pings on every connection, so that one that died silently (a host gone, a cable pulled)
  // ends its streams within half a minute and their sessions detach, ready to be resumed.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  service.RegisterWith(builder);
  return builder.BuildAndStart();
}

// The Prometheus metrics and the live page, behind `token`; null when not asked for.
absl::StatusOr<std::unique_ptr<MetricsHttpServer>> StartMetrics(const std::string& listen,
                                                                const std::string& token,
                                                                Scheduler& scheduler) {
  if (listen.empty()) return nullptr;
  absl::flat_hash_map<std::string, HttpResource> resources =
      LivePageResources([&scheduler] { return scheduler.Status(); });
  resources["/metrics"] = {.content_type = "text/plain; version=0.0.4; charset=utf-8",
                           .body = [&scheduler] { return scheduler.PrometheusText(); }};
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics =
      MetricsHttpServer::Start(listen, token, std::move(resources));
  if (metrics.ok()) {
    Log(LogLevel::kInfo, "metrics at http://", (*metrics)->address(),
        "/metrics, the live page at http://", (*metrics)->address(),
        "/?token=... (the endpoint file's metrics_token)");
  }
  return metrics;
}

// Runs the service (or, in world mode on ranks 1..N, a worker); returns the exit code.
int Run(ServerConfig& config) {
  const auto fail = [](const absl::Status& status) {
    Log(LogLevel::kError, status.ToString());
    return 1;
  };
  absl::StatusOr<MpiWorkerPool::Options> pool_options = PoolOptionsWithFiles(config);
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
  if (!config.socket_path.empty()) {
    if (absl::Status status = ClaimUnixSocket(config.socket_path); !status.ok()) {
      return fail(status);
    }
  }
  absl::StatusOr<ServingAccess> access = MakeServingAccess(config);
  if (!access.ok()) return fail(access.status());
  // Objects left by a gateway that was killed before it could remove them.
  UnlinkOrphanedSharedObjects();
  std::string shared_memory_prefix;
  if (config.shared_memory) {
    absl::StatusOr<std::string> prefix = NewSharedObjectPrefix(getpid());
    if (!prefix.ok()) return fail(prefix.status());
    shared_memory_prefix = *std::move(prefix);
  }
  Scheduler::Options scheduler_options = std::move(config.scheduler);
  scheduler_options.workers = started->workers;
  scheduler_options.shared_memory_prefix = shared_memory_prefix;
  // Declared before the scheduler, which hands it objects until it is destroyed.
  SharedObjectReaper reaper;
  scheduler_options.release_shared_object = [&reaper](const std::string& name) {
    reaper.Release(name);
  };
  Scheduler scheduler(std::move(scheduler_options));
  std::optional<IdleMemoryRelease> memory_release;
  if (config.idle_memory_release > absl::ZeroDuration()) {
    memory_release.emplace(IdleMemoryRelease::Options{.interval = config.idle_memory_release});
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
  std::unique_ptr<grpc::Server> server;
  const auto fail_serving = [&](const absl::Status& status) {
    if (server != nullptr) server->Shutdown();
    scheduler.StopDispatch();
    pool.Join().IgnoreError();
    return fail(status);
  };
  GatewayService service(
      scheduler, [](std::string reason) { StopSignal::Request(std::move(reason)); },
      shared_memory_prefix.empty() ? "" : SharedMemoryDomain(), access->token);
  int bound_port = 0;
  server = StartGrpcServer(config, *access, service, bound_port);
  if (server == nullptr) {
    return fail_serving(
        absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen_address)));
  }
  readiness.HealthStarted(server->GetHealthCheckService());
  // (Its directory, created 0700, keeps others out until then.)
  if (!config.socket_path.empty()) {
    if (absl::Status status = MakeSocketPrivate(config.socket_path); !status.ok()) {
      return fail_serving(status);
    }
  }
  // Before the endpoint file is written, which says where the metrics are.
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics =
      StartMetrics(config.metrics_listen, access->metrics_token, scheduler);
  if (!metrics.ok()) return fail_serving(metrics.status());
  if (absl::Status status =
          readiness.Listening({.target = ClientTarget(config.listen_address, bound_port),
                               .token = access->token,
                               .tls = access->tls,
                               .metrics = *metrics != nullptr ? (*metrics)->address() : "",
                               .metrics_token = access->metrics_token},
                              config.endpoint_file);
      !status.ok()) {
    return fail_serving(status);
  }

  const std::string reason = StopSignal::Wait();
  Log(LogLevel::kInfo, "stopping (", reason, "), draining");
  readiness.Draining();
  scheduler.Drain(reason);
  if (!scheduler.AwaitNoRunningTasks(absl::Now() + config.drain_grace)) {
    const std::string grace = absl::FormatDuration(config.drain_grace);
    Log(LogLevel::kWarning, "tasks still running after the drain grace period (", grace,
        "): failing them");
    scheduler.FailRunning(absl::StrCat("cancelled: the service stopped (", reason,
                                       ") and the task did not finish within the drain grace "
                                       "period of ",
                                       grace));
  }
  // Sessions close as their last outcomes are written; anything still open is cancelled at the
  // deadline.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  scheduler.StopDispatch();
  const absl::Status stopped = pool.Join();
  if (!config.socket_path.empty()) unlink(config.socket_path.c_str());
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
      mpigate::server::kRepeatableFlagsHelp));
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
  mpigate::server::SplitArgs split(argc, argv);
  std::vector<char*> args = split.argv();
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
  absl::StatusOr<mpigate::server::ServerConfig> config =
      mpigate::server::MakeServerConfig(mpigate::server::FlagValues(split));
  if (!config.ok()) {
    mpigate::Log(mpigate::LogLevel::kError, config.status().ToString());
    return 1;
  }
  return mpigate::server::Run(*config);
}
