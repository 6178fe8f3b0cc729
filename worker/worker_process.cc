#include "worker/worker_process.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/mpi_frames.h"
#include "worker/death_note.h"
#include "worker/registry.h"
#include "worker/runner_process.h"
#include "worker/worker_loop.h"

namespace mpigate::worker {
namespace {

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

int RunWorkerProcess(MPI_Comm gateway, bool disconnect, const WorkerOptions& options,
                     HelloDeadline& hello_deadline) {
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
  if (status.ok()) status = LoadFunctions(options, registry);
  std::optional<RunnerProcess::Options> runner;
  if (status.ok() && !options.in_process) {
    // The runner inherits the environment and working directory set above.
    absl::StatusOr<std::string> binary = FindRunnerBinary(options.runner_binary);
    status = binary.status();
    if (binary.ok()) {
      runner = RunnerProcess::Options{
          *std::move(binary), ToRunnerArgs({options, rank, pool_size, static_cast<int>(getpid())})};
    }
  }
  if (!status.ok()) {
    ReportStartupFailure(gateway, status).IgnoreError();
    hello_deadline.Met();
  } else {
    WorkerLoop loop(gateway, workers, registry, rank, pool_size, options.initializer,
                    hello_deadline, std::move(runner));
    absl::StatusOr<LoopEnd> end = loop.Run();
    DisarmDeathNote();
    // A communicator that lost a process cannot be disconnected (the gateway says so).
    disconnect = disconnect && loop.disconnect();
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
