// The MPI library this build links (//bazel:mpi): Open MPI or one of the MPICH family. The few
// places where the two genuinely differ ask here rather than testing macros of their own.
//
// Thread-safety: kOpenMpi is a constant; CheckCanSpawn makes MPI calls, so only the thread that
// owns MPI may call it, after MPI_Init.
#ifndef MPIGATE_SERVER_MPI_LIBRARY_H_
#define MPIGATE_SERVER_MPI_LIBRARY_H_

#include <mpi.h>

#include <string>

#include "absl/status/status.h"

namespace mpigate::server {

// Open MPI's mpi.h defines OPEN_MPI; MPICH and its derivatives (Cray MPICH, Intel MPI, MVAPICH)
// do not.
#ifdef OPEN_MPI
inline constexpr bool kOpenMpi = true;
#else
inline constexpr bool kOpenMpi = false;
#endif

// The mpiexec that goes with the linked library: $MPIGATE_MPIEXEC if set, else the one the build
// found next to it (mpiexec.openmpi or mpiexec.mpich by name; Debian's plain `mpiexec` may be the
// other family's).
std::string MpiexecPath();

// Whether this MPI can start processes at run time, as spawn mode does. Debian's MPICH 4.0 (its
// ch4:ucx device) cannot: it has no MPI_Open_port, on which MPI_Comm_spawn builds, and fails every
// spawn. FAILED_PRECONDITION then, saying so and pointing at world mode; OK otherwise. Open MPI
// always can, and is not asked.
absl::Status CheckCanSpawn();

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MPI_LIBRARY_H_
