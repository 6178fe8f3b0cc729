// mpigate-worker: one MPI worker process of an mpigate pool. Started by mpigate-server through
// MPI_Comm_spawn, never by hand.
#include <mpi.h>

#include <cstdio>

#include "absl/status/status.h"
#include "wire/mpi_frames.h"
#include "worker/builtins.h"
#include "worker/registry.h"
#include "worker/worker_loop.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "mpigate-worker: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // This process makes every MPI call from its main thread.
  int provided = MPI_THREAD_SINGLE;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    return Fail(absl::InternalError("MPI_Init_thread failed"));
  }
  MPI_Comm gateway = MPI_COMM_NULL;
  MPI_Comm_get_parent(&gateway);
  if (gateway == MPI_COMM_NULL) {
    MPI_Finalize();
    return Fail(absl::FailedPreconditionError(
        "mpigate-worker is started by mpigate-server (MPI_Comm_spawn), not by hand"));
  }
  absl::Status status = mpigate::wire::ReturnErrors(gateway);
  if (provided < MPI_THREAD_FUNNELED && status.ok()) {
    status = absl::FailedPreconditionError("MPI does not provide MPI_THREAD_FUNNELED");
  }

  mpigate::worker::TaskContext context;
  MPI_Comm_rank(gateway, &context.worker_index);
  MPI_Comm_size(gateway, &context.pool_size);

  mpigate::worker::FunctionRegistry registry;
  if (status.ok()) status = mpigate::worker::RegisterBuiltins(registry);
  if (status.ok()) {
    status = mpigate::worker::WorkerLoop(gateway, registry, context).Run();
  } else {
    mpigate::worker::ReportStartupFailure(gateway, status).IgnoreError();
  }

  MPI_Comm_disconnect(&gateway);
  MPI_Finalize();
  return status.ok() ? 0 : Fail(status);
}
