#include "common/loopback_listeners.h"

#include <cstdlib>
#include <cstring>

#include "common/loopback_bind.h"

namespace mpigate {

bool OneHostPool(const std::vector<std::pair<std::string, std::string>>& spawn_info,
                 const std::function<const char*(const char*)>& getenv) {
  // Keys of MPI_Comm_spawn's info that Open MPI 4.1 places processes by.
  for (const auto& [key, value] : spawn_info) {
    for (const char* host_key : {"host", "hostfile", "add-host", "add-hostfile"}) {
      if (key == host_key) return false;
    }
  }
  // Started by mpiexec (which passes its job to the process in these), or inside a resource
  // manager's job, whose allocation the daemon reads and spawns into, or with a default hostfile.
  for (const char* variable :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_NAMESPACE", "SLURM_JOB_ID", "SLURM_JOBID", "PBS_JOBID",
        "PBS_NODEFILE", "LSB_JOBID", "PE_HOSTFILE", "OMPI_MCA_orte_default_hostfile"}) {
    const char* value = getenv(variable);
    if (value != nullptr && value[0] != '\0') return false;
  }
  return true;
}

bool TakeLoopbackListenersRequest() {
  const char* value = std::getenv(kLoopbackListenersEnv);
  const bool requested = value != nullptr && std::strcmp(value, "1") == 0;
  unsetenv(kLoopbackListenersEnv);
  return requested;
}

ScopedLoopbackListeners::ScopedLoopbackListeners(bool active) : active_(active) {
  if (active_) MpigateSetLoopbackBind(1);
}

ScopedLoopbackListeners::~ScopedLoopbackListeners() {
  if (active_) MpigateSetLoopbackBind(0);
}

}  // namespace mpigate
