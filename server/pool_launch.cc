#include "server/pool_launch.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/loopback_listeners.h"
#include "common/program_files.h"
#include "server/mpi_library.h"
#include "worker/worker_options.h"

namespace mpigate::server {
namespace {

// The worker executable: the flag, $MPIGATE_WORKER_BINARY, or a sibling of this program (an
// installed layout, or Bazel's bazel-bin/server next to bazel-bin/worker; common/program_files.h).
absl::StatusOr<std::string> FindWorkerBinary(const std::string& explicit_path) {
  return NamedOrFoundProgram(explicit_path, "worker binary ", "worker", "mpigate-worker",
                             "pass --worker-binary");
}

// The task runner executable for the workers: the flag or $MPIGATE_RUNNER_BINARY, checked here;
// else, in world mode (where the workers are this program), a sibling of this program, and when
// spawning, empty: each worker finds the one next to its own executable.
absl::StatusOr<std::string> RunnerBinaryForWorkers(const std::string& explicit_path, bool world) {
  if (explicit_path.empty() && !world) return std::string();
  return worker::FindRunnerBinary(explicit_path);
}

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
absl::StatusOr<std::string> PythonLibraryForWorkers(PythonTasks mode) {
  if (mode == PythonTasks::kOff) return std::string();
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
  if (mode == PythonTasks::kOn) {
    return absl::FailedPreconditionError(absl::StrCat("--python=on: ", problem.message(),
                                                      "; --python=off runs without Python tasks"));
  }
  Log(LogLevel::kInfo, "no Python tasks: ", problem.message());
  return std::string();
}

}  // namespace

absl::StatusOr<MpiWorkerPool::Options> PoolOptionsWithFiles(const ServerConfig& config) {
  MpiWorkerPool::Options options = config.pool;
  absl::StatusOr<std::string> python_library = PythonLibraryForWorkers(config.python);
  if (!python_library.ok()) return python_library.status();
  if (!python_library->empty()) options.worker_options.task_libs.push_back(*python_library);
  if (!options.worker_options.in_process) {
    absl::StatusOr<std::string> runner_binary =
        RunnerBinaryForWorkers(config.explicit_runner_binary, options.world);
    if (!runner_binary.ok()) return runner_binary.status();
    options.worker_options.runner_binary = *std::move(runner_binary);
  }
  if (!options.world) {
    absl::StatusOr<std::string> worker_binary = FindWorkerBinary(config.explicit_worker_binary);
    if (!worker_binary.ok()) return worker_binary.status();
    options.worker_binary = *std::move(worker_binary);
  }
  return options;
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
  // Open MPI picks a point-to-point layer by starting each it has and keeping the best: that
  // probing is most of every MPI_Init, in the gateway and in each worker, and ob1 is what it
  // picks here anyway.
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
// A user's own hugetlb setting wins.
void UseHugePagesInWorkers() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const std::string current = tunables == nullptr ? "" : tunables;
  if (absl::StrContains(current, "glibc.malloc.hugetlb")) return;
  const std::string updated =
      current.empty() ? "glibc.malloc.hugetlb=1" : absl::StrCat(current, ":glibc.malloc.hugetlb=1");
  setenv("GLIBC_TUNABLES", updated.c_str(), /*overwrite=*/1);
}

}  // namespace mpigate::server
