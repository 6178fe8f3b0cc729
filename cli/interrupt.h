// InterruptWatcher: what `mpigate submit` and `mpigate map` do on SIGINT (Ctrl-C) and SIGTERM
// while their tasks run. The first of those signals marks the command interrupted and runs its
// stop action once, on a thread of the watcher's; a second one ends the process at once with
// kExitInterrupted.
//
//   InterruptWatcher watcher;                    // before the tasks are submitted
//   auto results = std::make_shared<MapResults>(executor.Map(...));
//   watcher.OnInterrupt([results] { results->Kill(); });
//   while (auto result = results->Next()) {
//     if (watcher.interrupted()) break;          // the kill woke Next() up
//     ...
//   }
//
// The handlers (SA_RESTART) only write the signal's number into a pipe; the watcher's thread does
// the rest, so nothing that is not async-signal-safe runs in a handler.
//
// Thread-safety: one watcher at a time in a process. OnInterrupt() and interrupted() from any
// thread. The destructor restores the previous handlers and joins the watcher's threads after any
// stop action has returned, so an action should own what it touches (shared_ptrs or copies).
#ifndef MPIGATE_CLI_INTERRUPT_H_
#define MPIGATE_CLI_INTERRUPT_H_

#include <signal.h>

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::cli {

class InterruptWatcher {
 public:
  // Installs the handlers for SIGINT and SIGTERM and starts the watcher's thread. If the pipe
  // cannot be made, installs nothing: the signals then do what they did before.
  InterruptWatcher();
  ~InterruptWatcher();

  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  // What to do on the first signal, replacing any earlier action: run on a thread of the
  // watcher's (so it may block, e.g. for a round trip to the service, while a second signal still
  // ends the process), or at once on the calling thread if the signal has already come.
  void OnInterrupt(absl::AnyInvocable<void()> action);

  // Whether a signal has come. Set before the stop action starts, so a command that sees an
  // effect of its action (a task ended CANCELLED) also sees this true.
  bool interrupted() const;

 private:
  // The watcher's thread: reads the pipe until the destructor writes its stop byte.
  void Watch();
  void Interrupted();

  // Constant after construction; -1 if the pipe could not be made.
  int read_fd_ = -1;
  int write_fd_ = -1;
  struct sigaction previous_int_ = {};
  struct sigaction previous_term_ = {};
  std::thread watcher_;
  // The stop action's thread: started by the watcher's thread, joined by the destructor once the
  // watcher's thread has ended.
  std::thread stopper_;

  mutable absl::Mutex mu_;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
  absl::AnyInvocable<void()> action_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_INTERRUPT_H_
