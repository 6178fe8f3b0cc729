#include "server/server_config.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/endpoint.h"
#include "worker/exec_task.h"
#include "worker/worker_options.h"

namespace mpigate::server {
namespace {

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

// The flag's value, else the environment variable's.
std::string FlagOrEnvironment(const std::string& flag, const char* variable) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(variable);
  return value == nullptr ? "" : value;
}

absl::Status ConfigurePool(const ServerFlags& flags, ServerConfig& config) {
  MpiWorkerPool::Options& pool = config.pool;
  pool.workers = flags.workers;
  pool.world = flags.world;
  pool.bootup_timeout = flags.bootup_timeout;
  worker::WorkerOptions& worker = pool.worker_options;
  worker.initializer.function = flags.initializer;
  worker.initializer.input = flags.initargs;
  worker.wdir = flags.worker_wdir;
  worker.hello_timeout = flags.bootup_timeout;
  worker.env = flags.worker_env;
  worker.task_libs = flags.task_lib;
  if (flags.python == "auto") {
    config.python = PythonTasks::kAuto;
  } else if (flags.python == "on") {
    config.python = PythonTasks::kOn;
  } else if (flags.python == "off") {
    config.python = PythonTasks::kOff;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--python is `auto`, `on` or `off`, got '", flags.python, "'"));
  }
  worker.allow_exec = flags.allow_exec;
  if (flags.isolation != "process" && flags.isolation != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--isolation is `process` or `none`, got '", flags.isolation, "'"));
  }
  worker.in_process = flags.isolation == "none";
  if (!worker.in_process) {
    config.explicit_runner_binary = FlagOrEnvironment(flags.runner_binary, "MPIGATE_RUNNER_BINARY");
  }
  for (const char* path : {flags.task_lib_path.c_str(),
                           static_cast<const char*>(std::getenv("MPIGATE_TASK_LIB_PATH"))}) {
    if (path == nullptr) continue;
    for (absl::string_view directory : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      worker.task_lib_path.emplace_back(directory);
    }
  }
  if (absl::Status status = worker::ValidateEnv(worker.env); !status.ok()) return status;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> spawn_info =
      ParseSpawnInfo(flags.spawn_info);
  if (!spawn_info.ok()) return spawn_info.status();
  pool.spawn_info = *std::move(spawn_info);
  if (pool.world && !pool.spawn_info.empty()) {
    return absl::InvalidArgumentError("--spawn-info has no effect in world mode: nothing spawns");
  }
  if (!pool.world) {
    config.explicit_worker_binary = FlagOrEnvironment(flags.worker_binary, "MPIGATE_WORKER_BINARY");
  }
  return absl::OkStatus();
}

// Where to serve, and who may call: --token-file and --tls-* need TCP.
absl::Status ConfigureServing(const ServerFlags& flags, ServerConfig& config) {
  absl::StatusOr<std::string> address =
      ListenAddress(flags.listen.empty() ? DefaultListenAddress() : flags.listen);
  if (!address.ok()) return address.status();
  config.listen_address = *std::move(address);
  config.socket_path = UnixSocketPath(config.listen_address);
  config.endpoint_file = flags.endpoint_file.empty() ? DefaultEndpointFile() : flags.endpoint_file;
  const bool tcp = config.socket_path.empty();
  if (!tcp && (!flags.token_file.empty() || !flags.tls_cert.empty() || !flags.tls_key.empty() ||
               !flags.tls_client_ca.empty())) {
    return absl::InvalidArgumentError(
        "--token-file and --tls-* apply to TCP only: pass --listen HOST:PORT (on a Unix socket, "
        "the socket's permissions let only this user in)");
  }
  if (flags.tls_cert.empty() != flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (flags.tls_cert.empty() && !flags.tls_client_ca.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
  }
  config.token_file = flags.token_file;
  config.tls_cert = flags.tls_cert;
  config.tls_key = flags.tls_key;
  config.tls_client_ca = flags.tls_client_ca;
  if (flags.metrics_listen.empty() && !flags.metrics_token_file.empty()) {
    return absl::InvalidArgumentError("--metrics_token_file needs --metrics_listen");
  }
  config.metrics_listen = flags.metrics_listen;
  config.metrics_token_file = flags.metrics_token_file;
  return absl::OkStatus();
}

absl::Status ConfigureLimits(const ServerFlags& flags, ServerConfig& config) {
  if (!(flags.resume_grace_s >= 0) || flags.max_unread_result_mb < 0 || flags.max_sessions < 0 ||
      flags.max_queued_tasks_per_session < 0) {
    return absl::InvalidArgumentError(
        "--resume_grace_s, --max_unread_result_mb, --max_sessions and "
        "--max_queued_tasks_per_session must not be negative");
  }
  // gRPC's limits are ints: up to 2 GiB less one byte.
  if (flags.max_message_mb < 1 || flags.max_message_mb > 2047) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_message_mb must be between 1 and 2047, not ", flags.max_message_mb));
  }
  config.max_message_bytes = flags.max_message_mb << 20;
  if (flags.max_tasks_per_worker < 1 || flags.max_tasks_per_worker > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_tasks_per_worker must be between 1 and 4096, not ", flags.max_tasks_per_worker));
  }
  if (flags.prefetch_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--prefetch_window must not be negative");
  }
  if (flags.max_connection_idle < absl::Milliseconds(1) ||
      flags.handshake_timeout < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        "--max_connection_idle and --handshake_timeout must be at least 1ms");
  }
  // gRPC takes both in milliseconds, as ints; INT_MAX is "never".
  const auto channel_milliseconds = [](absl::Duration duration) {
    return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(duration), INT_MAX));
  };
  config.max_connection_idle_ms = channel_milliseconds(flags.max_connection_idle);
  config.handshake_timeout_ms = channel_milliseconds(flags.handshake_timeout);

  Scheduler::Options& scheduler = config.scheduler;
  scheduler.max_tasks_per_worker = flags.max_tasks_per_worker;
  scheduler.prefetch_window = flags.prefetch_window;
  scheduler.max_message_bytes = static_cast<uint64_t>(config.max_message_bytes);
  scheduler.resume_grace = absl::Seconds(flags.resume_grace_s);
  scheduler.max_unread_result_bytes = static_cast<uint64_t>(flags.max_unread_result_mb) << 20;
  scheduler.max_sessions = static_cast<size_t>(flags.max_sessions);
  scheduler.task_environments = !config.pool.worker_options.in_process;
  scheduler.max_queued_tasks_per_session = static_cast<size_t>(flags.max_queued_tasks_per_session);
  if (!flags.allow_exec) {
    scheduler.refused_functions[worker::kExecFunction] =
        "exec is off on this service: it runs any program as the service's user; start "
        "mpigate-server with --allow-exec to enable it";
  }
  config.shared_memory = flags.shared_memory;
  config.drain_grace = flags.drain_grace;
  config.idle_memory_release = flags.idle_memory_release_s > 0
                                   ? absl::Seconds(flags.idle_memory_release_s)
                                   : absl::ZeroDuration();
  return absl::OkStatus();
}

}  // namespace

SplitArgs::SplitArgs(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i == 0 || !absl::StartsWith(arg, "--") || arg == "--") {
      args.push_back(std::move(arg));
      continue;
    }
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<long>(end), '-', '_');
    const std::string name = arg.substr(2, end - 2);
    std::vector<std::string>* repeated = name == "worker_env"   ? &worker_env
                                         : name == "spawn_info" ? &spawn_info
                                         : name == "task_lib"   ? &task_lib
                                                                : nullptr;
    if (repeated == nullptr) {
      args.push_back(std::move(arg));
    } else if (end < arg.size()) {
      repeated->push_back(arg.substr(end + 1));
    } else if (i + 1 < argc) {
      repeated->push_back(argv[++i]);
    } else {
      repeated->push_back("");  // Rejected as not KEY=VALUE.
    }
  }
}

std::vector<char*> SplitArgs::argv() {
  std::vector<char*> pointers;
  for (std::string& arg : args) pointers.push_back(arg.data());
  return pointers;
}

absl::StatusOr<ServerConfig> MakeServerConfig(const ServerFlags& flags) {
  ServerConfig config;
  if (absl::Status status = ConfigurePool(flags, config); !status.ok()) return status;
  if (absl::Status status = ConfigureServing(flags, config); !status.ok()) return status;
  if (absl::Status status = ConfigureLimits(flags, config); !status.ok()) return status;
  return config;
}

}  // namespace mpigate::server
