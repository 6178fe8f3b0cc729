// ServerConfig: what mpigate-server's command line asks for, checked before anything starts.
//
// main.cc defines the flags and copies them into ServerFlags (whose defaults are the flags'
// defaults); MakeServerConfig checks every value and combination and derives the options of the
// pool, the scheduler and the gRPC server from them. It reads no file: what must be found or
// read on disk (binaries, the Python runtime, tokens, certificates) is done by pool_launch.h and
// serving_access.h, from the paths it keeps. Errors are INVALID_ARGUMENT naming the flag.
//
//   SplitArgs split = SplitArgs(argc, argv);          // before absl::ParseCommandLine
//   absl::StatusOr<ServerConfig> config = MakeServerConfig(flags);
//
// Thread-safety: pure functions (MakeServerConfig reads the environment: MPIGATE_RUN_DIR,
// MPIGATE_ENDPOINT_FILE, MPIGATE_WORKER_BINARY, MPIGATE_RUNNER_BINARY, MPIGATE_TASK_LIB_PATH).
#ifndef MPIGATE_SERVER_SERVER_CONFIG_H_
#define MPIGATE_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/mpi_pool.h"
#include "server/scheduler.h"

namespace mpigate::server {

// The command line as given; each field is the flag of its name, with its default.
struct ServerFlags {
  int workers = 0;
  std::string listen;
  std::string token_file;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string endpoint_file;
  std::string worker_binary;
  std::string isolation = "process";
  std::string runner_binary;
  int max_message_mb = 512;
  absl::Duration drain_grace = absl::Seconds(30);
  absl::Duration bootup_timeout = absl::Seconds(60);
  bool world = false;
  std::string initializer;
  std::string initargs;
  std::string worker_wdir;
  std::string task_lib_path;
  double resume_grace_s = 60;
  int64_t max_sessions = 1024;
  int64_t max_queued_tasks_per_session = 1 << 20;
  int max_unread_result_mb = 1024;
  int max_tasks_per_worker = 256;
  absl::Duration prefetch_window = absl::Milliseconds(1);
  bool shared_memory = true;
  bool allow_exec = false;
  std::string python = "auto";
  std::string metrics_listen;
  std::string metrics_token_file;
  double idle_memory_release_s = 5;
  absl::Duration max_connection_idle = absl::Seconds(60);
  absl::Duration handshake_timeout = absl::Seconds(10);
  // The repeatable flags (kRepeatableFlagsHelp), in the order given.
  std::vector<std::string> worker_env;
  std::vector<std::string> spawn_info;
  std::vector<std::string> task_lib;
};

// The flags that may be given more than once, for --help: Abseil flags keep only the last value,
// so SplitArgs takes them out of the command line before Abseil parses it.
inline constexpr const char* kRepeatableFlagsHelp =
    "  --worker-env NAME=VALUE  set in every worker's environment (repeatable; mpi4py's env)\n"
    "  --spawn-info KEY=VALUE   MPI_Info for MPI_Comm_spawn, e.g. host=a,b or wdir=/x "
    "(repeatable)\n"
    "  --task-lib NAME|PATH     a task library every worker loads at start (repeatable)\n";

// A command line with dashes in flag names turned into underscores (--endpoint-file is
// --endpoint_file; Abseil's names cannot hold dashes) and the repeatable flags taken out.
struct SplitArgs {
  SplitArgs(int argc, char** argv);
  // For absl::ParseCommandLine: pointers into `args`.
  std::vector<char*> argv();

  std::vector<std::string> args;
  std::vector<std::string> worker_env;
  std::vector<std::string> spawn_info;
  std::vector<std::string> task_lib;
};

// Whether workers load the Python task runtime (--python).
enum class PythonTasks { kAuto, kOn, kOff };

struct ServerConfig {
  // All but the files found on disk (pool_launch.h): the worker binary when spawning, the task
  // runner, the Python runtime. `explicit_*_binary` are the flags' or the environment's.
  MpiWorkerPool::Options pool;
  std::string explicit_worker_binary;
  std::string explicit_runner_binary;
  PythonTasks python = PythonTasks::kAuto;

  // Where to serve: a gRPC address (ListenAddress), its Unix socket's path ("" on TCP).
  std::string listen_address;
  std::string socket_path;
  std::string endpoint_file;
  // Only on TCP; files as given (serving_access.h reads them).
  std::string token_file;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Empty: no metrics server.
  std::string metrics_listen;
  std::string metrics_token_file;

  // All but what is known once the pool has started (workers, shared memory and its release).
  Scheduler::Options scheduler;
  bool shared_memory = true;
  int max_message_bytes = 0;
  // gRPC's channel arguments, in ms (INT_MAX: never).
  int max_connection_idle_ms = 0;
  int handshake_timeout_ms = 0;
  absl::Duration drain_grace;
  // Zero: never.
  absl::Duration idle_memory_release;
};

absl::StatusOr<ServerConfig> MakeServerConfig(const ServerFlags& flags);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SERVER_CONFIG_H_
