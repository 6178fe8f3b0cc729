// PollBackoff: how long to wait between non-blocking MPI polls.
//
// Open MPI's blocking receive busy-polls, so a pool that blocks in MPI_Recv burns a core per idle
// process. Instead the owner of MPI polls with MPI_Improbe and waits between polls for the delay
// this class hands out: zero for a short hot phase right after progress (so a busy pool reacts in
// microseconds), then sleeps that double up to a cap (so an idle pool costs almost nothing).
//
// Pure logic, no clocks or I/O. Not thread-safe: one per polling loop.
#ifndef MPIGATE_WIRE_POLL_BACKOFF_H_
#define MPIGATE_WIRE_POLL_BACKOFF_H_

#include <algorithm>

#include "absl/time/time.h"

namespace mpigate::wire {

// Makes the calling thread's short sleeps precise. Linux lets a sleep overrun by the thread's
// timer slack, 50 us by default, which would turn every 2 us backoff step into 50 us or more.
void UsePreciseSleeps();

class PollBackoff {
 public:
  struct Options {
    // Polls right after progress that do not wait at all.
    int hot_polls = 256;
    // The first sleep after the hot phase; later sleeps double.
    absl::Duration min_sleep = absl::Microseconds(2);
    // The longest sleep: bounds the latency of the first message after an idle spell.
    absl::Duration max_sleep = absl::Milliseconds(1);
  };

  PollBackoff() : PollBackoff(Options()) {}
  explicit PollBackoff(const Options& options) : options_(options) {}

  // Call after a poll that made progress: the next polls are hot again.
  void Reset() {
    hot_polls_left_ = options_.hot_polls;
    next_sleep_ = options_.min_sleep;
    settle_after_hot_ = false;
  }

  // Call when nothing is expected once the hot polls are over: after them the delays are the
  // cap at once, without the short sleeps in between.
  void SettleAfterHotPolls() { settle_after_hot_ = true; }

  // The delay before the next poll, after one that found nothing.
  absl::Duration NextDelay() {
    if (hot_polls_left_ > 0) {
      --hot_polls_left_;
      return absl::ZeroDuration();
    }
    if (settle_after_hot_) next_sleep_ = options_.max_sleep;
    const absl::Duration delay = next_sleep_;
    next_sleep_ = std::min(next_sleep_ * 2, options_.max_sleep);
    return delay;
  }

  // The hot polls are over and the sleeps have reached their cap: nothing has happened for a
  // while.
  bool Settled() const { return hot_polls_left_ == 0 && next_sleep_ == options_.max_sleep; }

 private:
  Options options_;
  int hot_polls_left_ = options_.hot_polls;
  absl::Duration next_sleep_ = options_.min_sleep;
  bool settle_after_hot_ = false;
};

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_POLL_BACKOFF_H_
