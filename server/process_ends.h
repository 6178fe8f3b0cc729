// What the gateway learns from the OS about worker processes that ended: how one died (the note
// it left) and whether Open MPI's daemon has reaped it yet.
//
// A spawn while Open MPI's daemon still handles a death left new workers stuck in MPI_Init, and
// the gateway with them in MPI_Comm_spawn, for good; so the gateway waits for the reaping (with a
// bounded patience) before it spawns replacements.
//
// Thread-safety: not thread-safe; the gateway's MPI thread owns it. Reads files, makes no MPI call.
#ifndef MPIGATE_SERVER_PROCESS_ENDS_H_
#define MPIGATE_SERVER_PROCESS_ENDS_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace mpigate::server {

// How a lost process ended, for its log line and its tasks' errors: `heard` (what the gateway
// saw, e.g. its silence) if set, else the note the worker left beside its doorbell
// (worker/death_note.h; removed once read), else why the gateway killed it, else a loss without
// a word.
std::string HowProcessEnded(std::string heard, const std::string& doorbell,
                            const std::string& killed_because);

// Whether process `pid`, which has ended, has been reaped by its parent: it is a zombie until
// then, and gone (or another process under a reused pid) after.
bool Reaped(pid_t pid);

// Local processes seen to end that their parent may not have reaped yet.
class UnreapedEnds {
 public:
  // How long to wait for a reaping, at most.
  static constexpr absl::Duration kPatience = absl::Seconds(2);

  void Add(pid_t pid, absl::Time now) { ended_.emplace_back(pid, now); }
  bool empty() const { return ended_.empty(); }
  // Forgets those reaped, or seen to end more than kPatience before `now`; whether none is left.
  bool AllReaped(absl::Time now);

 private:
  std::vector<std::pair<pid_t, absl::Time>> ended_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_PROCESS_ENDS_H_
