#include "server/mpi_library.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "wire/mpi_frames.h"

namespace mpigate::server {

std::string MpiexecPath() {
  const char* chosen = std::getenv("MPIGATE_MPIEXEC");
  return chosen != nullptr && chosen[0] != '\0' ? chosen : MPIGATE_MPIEXEC;
}

absl::Status CheckCanSpawn() {
  if constexpr (kOpenMpi) return absl::OkStatus();
  // A port is what the spawned processes connect back to. Asking for one is quick and changes
  // nothing; asking for the universe size first would not be: an MPICH singleton then forks
  // `mpiexec` to become a job, which Hydra before MPICH 4.1 refuses, and waits for it forever.
  char port[MPI_MAX_PORT_NAME] = {};
  const int rc = MPI_Open_port(MPI_INFO_NULL, port);
  if (rc == MPI_SUCCESS) {
    MPI_Close_port(port);
    return absl::OkStatus();
  }
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(version, &length);
  const absl::string_view first_line =
      absl::string_view(version, length)
          .substr(0, absl::string_view(version, length).find_first_of("\r\n"));
  return absl::FailedPreconditionError(absl::StrCat(
      "this MPI library (", first_line, ") cannot start processes, so the pool cannot spawn its ",
      "workers (", wire::MpiError(rc, "MPI_Open_port").message(),
      "); start it in world mode instead: mpiexec -n N+1 mpigate-server --world"));
}

}  // namespace mpigate::server
