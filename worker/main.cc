// mpigate-worker: one MPI worker process of an mpigate pool. Started by mpigate-server through
// MPI_Comm_spawn, never by hand; its arguments carry the pool's worker options (see
// worker_process.h).
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/loopback_listeners.h"
#include "worker/hello_deadline.h"
#include "worker/worker_loop.h"
#include "worker/worker_options.h"
#include "worker/worker_process.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "mpigate-worker: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock would run the debug-only
  // deadlock detector (a process-wide spinlock and a graph lookup per lock): with
  // --isolation=none, 4% of a worker's CPU in a submit loop went to its graph alone.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Its arguments are the pool's, never MPI's (MPI_Comm_spawn passes them as they are): read
  // before MPI_Init, which has a deadline too (worker/hello_deadline.h).
  absl::StatusOr<mpigate::worker::WorkerOptions> options =
      mpigate::worker::ParseArgs(std::vector<std::string>(argv + 1, argv + argc));
  const absl::Duration hello_timeout =
      options.ok() ? options->hello_timeout : absl::InfiniteDuration();
  // Open MPI's MPI_Finalize starts with a fence over this process's job, which a dead member of
  // the job never joins: with that member on another host it waited for good (a worker of a job
  // that lost a process finalises without disconnecting: MpiWorkerPool). Every worker has said
  // goodbye to the gateway before it finalises, so no message of its is still on its way.
  // Read at MPI_Init.
  setenv("OMPI_MCA_async_mpi_finalize", "1", /*overwrite=*/0);
  // This process makes every MPI call from its main thread; tasks run on a thread of their own.
  int provided = MPI_THREAD_SINGLE;
  int initialized = MPI_ERR_OTHER;
  {
    mpigate::worker::HelloDeadline mpi_init_deadline(
        mpigate::worker::kMpiInitTimeoutFactor * hello_timeout, "MPI_Init");
    // MPI_Init opens Open MPI's listeners, on loopback if the pool is on one host.
    mpigate::ScopedLoopbackListeners loopback(mpigate::TakeLoopbackListenersRequest());
    initialized = MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  }
  mpigate::worker::HelloDeadline hello_deadline(hello_timeout, "the hello");
  if (initialized != MPI_SUCCESS) return Fail(absl::InternalError("MPI_Init_thread failed"));
  MPI_Comm gateway = MPI_COMM_NULL;
  MPI_Comm_get_parent(&gateway);
  if (gateway == MPI_COMM_NULL) {
    MPI_Finalize();
    return Fail(absl::FailedPreconditionError(
        "mpigate-worker is started by mpigate-server (MPI_Comm_spawn), not by hand"));
  }
  if (provided < MPI_THREAD_FUNNELED && options.ok()) {
    options = absl::FailedPreconditionError("MPI does not provide MPI_THREAD_FUNNELED");
  }
  if (!options.ok()) {
    // Tell the gateway why, so that its bootup fails with the reason instead of waiting.
    mpigate::worker::ReportStartupFailure(gateway, options.status()).IgnoreError();
    hello_deadline.Met();
    MPI_Comm_disconnect(&gateway);
    MPI_Finalize();
    return Fail(options.status());
  }
  return mpigate::worker::RunWorkerProcess(gateway, /*disconnect=*/true, *options, hello_deadline);
}
