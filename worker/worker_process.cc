#include "worker/worker_process.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "wire/mpi_frames.h"
#include "worker/builtins.h"
#include "worker/exec_task.h"
#include "worker/registry.h"
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

absl::Status ApplyEnvironment(const WorkerOptions& options) {
  for (const std::string& entry : options.env) {
    const size_t equals = entry.find('=');
    const std::string name = entry.substr(0, equals);
    if (setenv(name.c_str(), entry.c_str() + equals + 1, /*overwrite=*/1) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("setenv ", name, ": ", std::strerror(errno)));
    }
  }
  if (!options.wdir.empty() && chdir(options.wdir.c_str()) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot enter working directory ", options.wdir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void Finish(MPI_Comm gateway, bool disconnect) {
  if (disconnect) MPI_Comm_disconnect(&gateway);
  MPI_Finalize();
}

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

int RunWorkerProcess(MPI_Comm gateway, bool disconnect, const WorkerOptions& options) {
  absl::Status status = wire::ReturnErrors(gateway);
  int rank = 0;
  int pool_size = 1;
  MPI_Comm_rank(gateway, &rank);
  MPI_Comm_size(gateway, &pool_size);
  // Gangs are made from MPI_COMM_WORLD: the spawned workers' own world, in which worker i is rank
  // i, or in world mode the whole job, whose rank 0 is the gateway.
  WorkerGroup workers{MPI_COMM_WORLD, 0};
  if (!disconnect) {
    // World mode: rank 0 of MPI_COMM_WORLD is the gateway, not a worker.
    rank -= 1;
    pool_size -= 1;
    workers.first_rank = 1;
  }
  if (status.ok()) status = wire::ReturnErrors(workers.comm);

  FunctionRegistry registry;
  if (status.ok()) status = ApplyEnvironment(options);
  if (status.ok()) status = RegisterBuiltins(registry);
  if (status.ok() && options.allow_exec) status = registry.Add(ExecTaskDefinition());
  if (status.ok()) status = LoadTaskLibraries(options.task_libs, options.task_lib_path, registry);
  if (!status.ok()) {
    ReportStartupFailure(gateway, status).IgnoreError();
  } else {
    absl::StatusOr<LoopEnd> end =
        WorkerLoop(gateway, workers, registry, rank, pool_size, options.initializer).Run();
    if (end.ok() && *end == LoopEnd::kStoppedDuringTask) {
      // The task cannot be interrupted and still uses the registry: leave without unwinding.
      Finish(gateway, disconnect);
      std::_Exit(0);
    }
    status = end.status();
  }
  Finish(gateway, disconnect);
  if (!status.ok()) {
    std::fprintf(stderr, "mpigate-worker %d: %s\n", rank, status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace mpigate::worker
