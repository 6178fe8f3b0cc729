// RuntimeWatch: what the MPI runtime itself knows of worker processes the gateway cannot watch by
// their pid (those on other hosts), and its way to kill them.
//
// Such a worker is watched by its heartbeats (server/silence_watch.h), but not while it runs a gang
// function: its one MPI thread is then in the user's code, perhaps blocked in a collective for as
// long as the function likes. Open MPI's runtime (ORTE, through PMIx) does see it die: the daemon
// of its host tells the head node process (HNP, mpiexec's or a singleton's), whose process table
// the gateway can query (PMIx_Query_info, PMIX_QUERY_PROC_TABLE; measured 0.4-0.8 ms a query, a
// death seen in it within milliseconds). Only the HNP's table is current: a daemon on another
// host showed other hosts' processes with pid 0 and a launch state for good (docs/worker-loss.md),
// so an entry counts only when its pid is the one the worker said in its hello. The runtime can
// also kill a process on any host (PMIx_Job_control, PMIX_JOB_CTRL_KILL), which releases a gang's
// surviving members from a collective with a dead one; a process it killed stays "running" in its
// table, so the caller takes it as lost itself.
//
// Without PMIx (MPICH builds) Connect() says the runtime cannot be asked.
//
// Thread-safety: not thread-safe; the gateway's MPI thread owns it (PMIx shares Open MPI's
// connection to its daemon, set up by MPI_Init and ended by MPI_Finalize, which it must be
// destroyed before).
#ifndef MPIGATE_SERVER_RUNTIME_WATCH_H_
#define MPIGATE_SERVER_RUNTIME_WATCH_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mpigate::server {

// One process of a job, as the runtime's table says.
struct RuntimeProcess {
  uint32_t rank = 0;
  pid_t pid = 0;
  // The runtime's own state code: ORTE's under Open MPI 4.1 (orte/mca/plm/plm_types.h).
  uint32_t state = 0;
  int exit_code = 0;
};

// If `table` says the process of `rank` whose pid is `pid` has ended: how, for the log and its
// tasks' errors. Nothing while it runs, and nothing from an entry of another pid (a table that is
// not current, or a later process of the rank).
std::optional<std::string> RuntimeSaysEnded(const std::vector<RuntimeProcess>& table, uint32_t rank,
                                            pid_t pid);

class RuntimeWatch {
 public:
  // Connects to the runtime of this process's MPI library; call after MPI_Init.
  static absl::StatusOr<std::unique_ptr<RuntimeWatch>> Connect();
  ~RuntimeWatch();
  RuntimeWatch(const RuntimeWatch&) = delete;
  RuntimeWatch& operator=(const RuntimeWatch&) = delete;

  // The runtime's table of job `job`'s processes (a worker's hello says its job and rank).
  absl::StatusOr<std::vector<RuntimeProcess>> Processes(const std::string& job);
  // Asks the runtime to kill process `rank` of `job`, wherever it runs.
  absl::Status Kill(const std::string& job, uint32_t rank);

 private:
  RuntimeWatch() = default;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_RUNTIME_WATCH_H_
