// PoolView: what the live page (server/live_page) and `mpigate top` show of a pool beyond the
// counters of TaskMetrics: the process serving each worker (host, pid, task runner's pid) and
// what it has reported, tasks ended in each of the last minutes' seconds, and the latest
// failures with their messages. (Each session's tally is a SessionTally its session holds.)
//
// Cost: the scheduler calls it as tasks end, so every call is O(1) with fixed storage: a tally
// per worker, a ring of seconds, a ring of failures whose strings are cut to a bound and reuse
// their capacity. AppendTo() copies it into PoolStatus fields 20-59 while the scheduler holds its
// lock; the page is formatted from that copy after the lock is released.
//
// Thread-safety: none of its own. The scheduler owns one and calls it under its lock.
#ifndef MPIGATE_SERVER_POOL_VIEW_H_
#define MPIGATE_SERVER_POOL_VIEW_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"
#include "server/second_counts.h"

namespace mpigate::server {

// One session's tasks ended, by end state, and their rate over the last 10 s.
class SessionTally {
 public:
  // A task of the session ended in `state` at `second` (since the epoch).
  void Ended(v1::TaskState state, int64_t second);
  // Sets SessionStatus' tasks_* fields and its rate at `now` (over the time since `opened` when
  // that is shorter than 10 s).
  void AppendTo(absl::Time now, absl::Time opened, v1::SessionStatus& status) const;

 private:
  uint64_t succeeded_ = 0;
  uint64_t failed_ = 0;
  uint64_t cancelled_ = 0;
  SecondCounts<16> ended_;
};

class PoolView {
 public:
  // How far back tasks_ended_per_second goes, and how many failures are kept.
  static constexpr size_t kHistorySeconds = 300;
  static constexpr size_t kMaxFailures = 20;
  // How much of a failure's message and client name is kept.
  static constexpr size_t kMaxMessageBytes = 1024;
  static constexpr size_t kMaxClientNameBytes = 256;

  explicit PoolView(int workers);

  // A process serves `worker` from now on: on `host`, with `pid`, and its task runner `runner_pid`
  // (0 for none). Ignored for a worker out of range.
  void SetProcess(int worker, absl::string_view host, int pid, int runner_pid);

  // `worker` reported a task's result (a group task: its own part of it); `failed` if that is an
  // error. `runner_pid` names the runner that ran it, 0 if the worker did (it is then left as it
  // was).
  void Reported(int worker, bool failed, int runner_pid);

  // A task ended at `second` (since the epoch).
  void Ended(int64_t second) { history_.Add(second); }

  // A task failed at `when` with `outcome` (its error, its worker), as the task `task_id` of
  // session `session` of `client_name`, running `function`.
  void Failed(absl::Time when, uint64_t session, absl::string_view client_name, uint64_t task_id,
              absl::string_view function, const v1::TaskOutcome& outcome);

  // Fills in PoolStatus: worker_list with each worker's index, process and tally (the caller adds
  // what it runs), recent_failures (newest first) and tasks_ended_per_second up to `now` (as far
  // back as `started`).
  void AppendTo(absl::Time now, absl::Time started, v1::PoolStatus& status) const;

 private:
  struct Worker {
    std::string host;
    int pid = 0;
    int runner_pid = 0;
    uint64_t done = 0;
    uint64_t failed = 0;
  };

  std::vector<Worker> workers_;
  SecondCounts<kHistorySeconds> history_;
  // The latest failures: the next goes to failures_[next_failure_ % kMaxFailures].
  std::array<v1::FailureRecord, kMaxFailures> failures_;
  uint64_t next_failure_ = 0;
};

// The longest prefix of `text` of at most `max_bytes` that does not end inside a UTF-8 sequence.
absl::string_view CutUtf8(absl::string_view text, size_t max_bytes);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_POOL_VIEW_H_
