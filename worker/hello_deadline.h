// The bound on a worker's start: a worker that has not said hello in time ends itself (exit
// status 1). By then the gateway has given it up (mpigate-server --bootup_timeout,
// WorkerOptions::hello_timeout), and it cannot stop a process whose pid it learns only from the
// hello.
//
// The gateway's clock starts when its MPI_Comm_spawn returns, about when the workers' MPI_Init
// does: a worker counts the same timeout from then (WorkerOptions::hello_timeout), and gives
// MPI_Init itself as long again (kMpiInitTimeoutFactor), since Open MPI has left a spawned process
// stuck in MPI_Init after its parent's spawn had returned, and such a process must end too.
//
// Thread-safety: Met() and the destructor from the thread that made it; a thread of its own
// waits for the deadline.
#ifndef MPIGATE_WORKER_HELLO_DEADLINE_H_
#define MPIGATE_WORKER_HELLO_DEADLINE_H_

#include <thread>

#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace mpigate::worker {

// MPI_Init's deadline, in hello timeouts: see above.
inline constexpr int kMpiInitTimeoutFactor = 2;

class HelloDeadline {
 public:
  // Ends the process unless Met() is called within `timeout` (infinite: never), saying that
  // `awaited` (e.g. "the hello") did not happen in time.
  HelloDeadline(absl::Duration timeout, absl::string_view awaited);
  ~HelloDeadline() { Met(); }
  HelloDeadline(const HelloDeadline&) = delete;
  HelloDeadline& operator=(const HelloDeadline&) = delete;

  // What it waited for has happened (for the hello: it, or a startup failure in its place, has
  // gone to the gateway).
  void Met();

 private:
  absl::Notification met_;
  std::thread thread_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_HELLO_DEADLINE_H_
