// Waiting on many futures, as concurrent.futures.as_completed() and wait():
//
//   for (absl::StatusOr<mpigate::Future> done : mpigate::AsCompleted(futures, absl::Seconds(10))) {
//     if (!done.ok()) break;                  // DEADLINE_EXCEEDED: some did not finish in time
//     Use(done->Result());
//   }
//   mpigate::DoneAndNotDone split = mpigate::Wait(futures, absl::Seconds(1),
//                                                 mpigate::ReturnWhen::kFirstException);
//
// Both block on done callbacks feeding a queue (client/internal/done_queue.h); nothing polls.
// Futures of different executors may be mixed. A future listed twice counts once, as in Python,
// where the futures are made a set.
//
// Thread-safety: the functions may be called from any thread, but not from a done callback
// (they block). One CompletedFutures is used by one thread at a time.
#ifndef MPIGATE_CLIENT_WAIT_H_
#define MPIGATE_CLIENT_WAIT_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/future.h"
#include "client/internal/next_iterator.h"

namespace mpigate {

namespace internal {
class DoneQueue;
}  // namespace internal

// The futures of AsCompleted() in the order they finish.
class CompletedFutures {
 public:
  using iterator = internal::NextIterator<CompletedFutures, absl::StatusOr<Future>>;

  // The next future to finish (those already done first, in the order given). After the last one,
  // nullopt. If the timeout passes first: DEADLINE_EXCEEDED saying how many are unfinished, and
  // then nullopt, as Python's generator ends after raising TimeoutError.
  std::optional<absl::StatusOr<Future>> Next();

  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  friend CompletedFutures AsCompleted(std::vector<Future> futures, absl::Duration timeout);
  CompletedFutures(std::vector<Future> futures, absl::Duration timeout);

  std::vector<Future> futures_;
  absl::Duration timeout_;
  absl::Time deadline_;
  std::shared_ptr<internal::DoneQueue> done_;
  size_t yielded_ = 0;
  bool ended_ = false;
};

// concurrent.futures.as_completed(fs, timeout): the timeout counts from this call.
CompletedFutures AsCompleted(std::vector<Future> futures,
                             absl::Duration timeout = absl::InfiniteDuration());

// When Wait() returns.
enum class ReturnWhen {
  // When any future is done (finished or cancelled).
  kFirstCompleted,
  // When any future finishes with an error; if none does, when all are done. A cancelled future
  // counts as done, not as an error, as in CPython.
  kFirstException,
  // When all are done.
  kAllCompleted,
};

struct DoneAndNotDone {
  // Each in the order first given, without duplicates.
  std::vector<Future> done;
  std::vector<Future> not_done;
};

// concurrent.futures.wait(fs, timeout, return_when). Returns when `return_when` is met or
// `timeout` passes, whichever is first; a timeout is not an error: the futures still running are
// in `not_done`.
DoneAndNotDone Wait(const std::vector<Future>& futures,
                    absl::Duration timeout = absl::InfiniteDuration(),
                    ReturnWhen return_when = ReturnWhen::kAllCompleted);

}  // namespace mpigate

#endif  // MPIGATE_CLIENT_WAIT_H_
