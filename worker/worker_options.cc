#include "worker/worker_options.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/program_files.h"
#include "worker/builtins.h"
#include "worker/exec_task.h"
#include "worker/task_library.h"

namespace mpigate::worker {
namespace {

constexpr absl::string_view kInitializer = "--initializer=";
constexpr absl::string_view kInitargs = "--initargs=";
constexpr absl::string_view kEnv = "--env=";
constexpr absl::string_view kWdir = "--wdir=";
constexpr absl::string_view kTaskLib = "--task_lib=";
constexpr absl::string_view kTaskLibPath = "--task_lib_path=";
constexpr absl::string_view kAllowExec = "--allow_exec";
constexpr absl::string_view kInProcess = "--in_process";
constexpr absl::string_view kRunnerBinary = "--runner_binary=";
constexpr absl::string_view kHelloTimeoutMs = "--hello_timeout_ms=";
constexpr absl::string_view kRank = "--rank=";
constexpr absl::string_view kPoolSize = "--pool_size=";
constexpr absl::string_view kWorkerPid = "--worker_pid=";

}  // namespace

std::vector<std::string> ToArgs(const WorkerOptions& options) {
  std::vector<std::string> args;
  if (!options.initializer.function.empty()) {
    args.push_back(absl::StrCat(kInitializer, options.initializer.function));
    args.push_back(absl::StrCat(kInitargs, options.initializer.input));
  }
  for (const std::string& entry : options.env) args.push_back(absl::StrCat(kEnv, entry));
  if (!options.wdir.empty()) args.push_back(absl::StrCat(kWdir, options.wdir));
  for (const std::string& lib : options.task_libs) args.push_back(absl::StrCat(kTaskLib, lib));
  for (const std::string& directory : options.task_lib_path) {
    args.push_back(absl::StrCat(kTaskLibPath, directory));
  }
  if (options.allow_exec) args.emplace_back(kAllowExec);
  if (options.in_process) args.emplace_back(kInProcess);
  if (!options.runner_binary.empty()) {
    args.push_back(absl::StrCat(kRunnerBinary, options.runner_binary));
  }
  if (options.hello_timeout != absl::InfiniteDuration()) {
    args.push_back(absl::StrCat(
        kHelloTimeoutMs, std::max<int64_t>(absl::ToInt64Milliseconds(options.hello_timeout), 1)));
  }
  return args;
}

absl::StatusOr<WorkerOptions> ParseArgs(const std::vector<std::string>& args) {
  WorkerOptions options;
  for (absl::string_view arg : args) {
    if (absl::ConsumePrefix(&arg, kInitializer)) {
      options.initializer.function = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, kInitargs)) {
      options.initializer.input = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, kEnv)) {
      options.env.emplace_back(arg);
    } else if (absl::ConsumePrefix(&arg, kWdir)) {
      options.wdir = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, kTaskLib)) {
      options.task_libs.emplace_back(arg);
    } else if (absl::ConsumePrefix(&arg, kTaskLibPath)) {
      options.task_lib_path.emplace_back(arg);
    } else if (arg == kAllowExec) {
      options.allow_exec = true;
    } else if (arg == kInProcess) {
      options.in_process = true;
    } else if (absl::ConsumePrefix(&arg, kRunnerBinary)) {
      options.runner_binary = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, kHelloTimeoutMs)) {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(arg, &ms) || ms <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "worker argument ", kHelloTimeoutMs, " needs a positive number, got '", arg, "'"));
      }
      options.hello_timeout = absl::Milliseconds(ms);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown worker argument '", arg, "'"));
    }
  }
  if (absl::Status status = ValidateEnv(options.env); !status.ok()) return status;
  return options;
}

absl::Status ValidateEnv(const std::vector<std::string>& env) {
  for (const std::string& entry : env) {
    const size_t equals = entry.find('=');
    if (equals == 0 || equals == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker environment entries are NAME=VALUE, got '", entry, "'"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ToRunnerArgs(const RunnerConfig& config) {
  std::vector<std::string> args = {absl::StrCat(kRank, config.rank),
                                   absl::StrCat(kPoolSize, config.pool_size),
                                   absl::StrCat(kWorkerPid, config.worker_pid)};
  for (std::string& arg : ToArgs(config.worker)) args.push_back(std::move(arg));
  return args;
}

absl::StatusOr<RunnerConfig> ParseRunnerArgs(const std::vector<std::string>& args) {
  RunnerConfig config;
  std::vector<std::string> worker_args;
  const std::pair<absl::string_view, int*> numbers[] = {
      {kRank, &config.rank}, {kPoolSize, &config.pool_size}, {kWorkerPid, &config.worker_pid}};
  for (const std::string& arg : args) {
    const auto number = std::find_if(std::begin(numbers), std::end(numbers), [&arg](auto& entry) {
      return absl::StartsWith(arg, entry.first);
    });
    if (number == std::end(numbers)) {
      worker_args.push_back(arg);
    } else if (!absl::SimpleAtoi(absl::string_view(arg).substr(number->first.size()),
                                 number->second)) {
      return absl::InvalidArgumentError(
          absl::StrCat("task runner argument '", arg, "' is not a number"));
    }
  }
  absl::StatusOr<WorkerOptions> worker = ParseArgs(worker_args);
  if (!worker.ok()) return worker.status();
  config.worker = *std::move(worker);
  return config;
}

absl::StatusOr<std::string> FindRunnerBinary(const std::string& explicit_path) {
  return NamedOrFoundProgram(explicit_path, "task runner binary ", "worker", "mpigate-runner",
                             "pass --runner-binary to mpigate-server");
}

absl::Status LoadFunctions(const WorkerOptions& options, FunctionRegistry& registry) {
  if (absl::Status status = RegisterBuiltins(registry); !status.ok()) return status;
  if (options.allow_exec) {
    if (absl::Status status = registry.Add(ExecTaskDefinition()); !status.ok()) return status;
  }
  return LoadTaskLibraries(options.task_libs, options.task_lib_path, registry);
}

}  // namespace mpigate::worker
