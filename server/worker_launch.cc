#include "server/worker_launch.h"

#include <cstdlib>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "server/mpi_library.h"
#include "server/worker_count.h"
#include "wire/mpi_frames.h"
#include "wire/poll_backoff.h"

namespace mpigate::server {
namespace {

std::optional<int> UniverseSize() {
  int* value = nullptr;
  int found = 0;
  if (MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_UNIVERSE_SIZE, &value, &found) != MPI_SUCCESS ||
      !found || value == nullptr) {
    return std::nullopt;
  }
  return *value;
}

}  // namespace

absl::StatusOr<PoolSize> SizePool(bool world, int requested) {
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_SELF); !status.ok()) return status;
  if (absl::Status status = wire::ReturnErrors(MPI_COMM_WORLD); !status.ok()) return status;
  int world_size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (world) {
    if (world_size < 2) {
      return absl::InvalidArgumentError(
          "--world needs the workers started with the gateway: mpiexec -n N+1 mpigate-server "
          "--world (N >= 1)");
    }
    if (requested > 0 && requested != world_size - 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--workers=", requested, " but mpiexec started ", world_size - 1,
                       " worker ranks; in world mode the pool is ranks 1..N"));
    }
    // Open MPI's parameter and advice (docs/worker-loss.md); they mean nothing to MPICH.
    if (const char* abort = std::getenv("OMPI_MCA_orte_abort_on_non_zero_status");
        kOpenMpi && (abort == nullptr || absl::string_view(abort) != "0")) {
      Log(LogLevel::kInfo,
          "world mode: Open MPI ends the whole job if a worker is lost; to serve on with the "
          "others, start it with mpiexec --enable-recovery --mca orte_abort_on_non_zero_status 0");
    }
    return PoolSize{world_size - 1, 1};
  }
  if (absl::Status status = CheckCanSpawn(); !status.ok()) return status;
  absl::StatusOr<int> workers =
      ResolveWorkerCount(requested, std::getenv("MPIGATE_MAX_WORKERS"), UniverseSize(), world_size,
                         static_cast<int>(std::thread::hardware_concurrency()));
  if (!workers.ok()) return workers.status();
  return PoolSize{*workers, 0};
}

absl::StatusOr<MPI_Comm> SpawnWorkers(const SpawnPlan& plan) {
  std::vector<std::string> args = worker::ToArgs(plan.options);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  MPI_Info info = MPI_INFO_NULL;
  if (!plan.info.empty()) {
    MPI_Info_create(&info);
    for (const auto& [key, value] : plan.info) MPI_Info_set(info, key.c_str(), value.c_str());
  }
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<int> spawn_errors(static_cast<size_t>(plan.workers), MPI_SUCCESS);
  const int rc = MPI_Comm_spawn(plan.binary.c_str(), argv.data(), plan.workers, info, 0,
                                MPI_COMM_SELF, &comm, spawn_errors.data());
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) {
    absl::Status status =
        wire::MpiError(rc, absl::StrCat("spawning ", plan.workers, " workers from ", plan.binary));
    return absl::UnavailableError(status.message());
  }
  if (absl::Status status = wire::ReturnErrors(comm); !status.ok()) return status;
  return comm;
}

absl::StatusOr<std::map<int, wire::HelloFrame>> AwaitHellos(MPI_Comm comm, int rank_offset,
                                                            int workers, absl::Duration timeout) {
  std::map<int, wire::HelloFrame> hellos;
  wire::PollBackoff backoff;
  const absl::Time deadline = absl::Now() + timeout;
  while (static_cast<int>(hellos.size()) < workers) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(comm, MPI_ANY_SOURCE);
    if (!received.ok()) return received.status();
    if (!received->has_value()) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("only ", hellos.size(), " of ", workers,
                                                        " workers started within ",
                                                        absl::FormatDuration(timeout)));
      }
      absl::SleepFor(backoff.NextDelay());
      continue;
    }
    backoff.Reset();
    if ((**received).tag != wire::Tag::kHello) {
      return absl::InternalError("a worker sent a frame before its hello");
    }
    wire::HelloFrame& hello = hellos[(**received).source - rank_offset];
    if (absl::Status status = wire::Decode((**received).bytes, hello); !status.ok()) return status;
  }
  for (const auto& [worker, hello] : hellos) {
    if (hello.has_error()) {
      Log(LogLevel::kError, "worker ", worker, " on ", hello.host(), " (pid ", hello.pid(),
          ") failed to start: ", hello.error().message());
    } else if (hello.has_initializer_error()) {
      Log(LogLevel::kError, "worker ", worker, " on ", hello.host(), " (pid ", hello.pid(),
          ") is up, but its initializer failed: ", hello.initializer_error().message());
    } else {
      Log(LogLevel::kInfo, "worker ", worker, " up on ", hello.host(), " (pid ", hello.pid(), ")");
    }
  }
  return hellos;
}

}  // namespace mpigate::server
