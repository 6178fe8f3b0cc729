// TaskMetrics: what the service counts of its tasks, and the Prometheus text it serves of them.
//
// By function: tasks accepted and tasks ended by end state, payload bytes in and result bytes
// out, and histograms of the time tasks waited in the queue and the time they ran. Over all
// functions: tasks rejected at submit by status code, and the rate of tasks ended over the last
// 10 s (PoolStatus.recent_tasks_per_second). Pure bookkeeping over values the caller passes, so
// that it is tested without a pool.
//
// A function name becomes a label only when the pool has that function (AddFunction), and at most
// max_functions of them do: every other task counts under function="other". A client's names
// therefore never grow the page, whatever it sends.
//
// Thread-safety: none of its own. The scheduler owns one and calls it under its lock, where it
// takes a Snapshot (a copy) that a scrape formats after the lock is released.
#ifndef MPIGATE_SERVER_TASK_METRICS_H_
#define MPIGATE_SERVER_TASK_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpigate/v1/task.pb.h"
#include "server/second_counts.h"

namespace mpigate::server {

// A Prometheus histogram of durations, observed in microseconds and exposed in seconds, with
// buckets of 1, 2.5 and 5 per decade from 10 us to 100 s.
class DurationHistogram {
 public:
  static constexpr std::array<uint64_t, 22> kBoundsMicros = {
      10,        25,        50,         100,        250,        500,        1'000,   2'500,
      5'000,     10'000,    25'000,     50'000,     100'000,    250'000,    500'000, 1'000'000,
      2'500'000, 5'000'000, 10'000'000, 25'000'000, 50'000'000, 100'000'000};

  void Observe(uint64_t micros);
  uint64_t count() const { return count_; }
  // Observations per bucket (the last: above every bound), not cumulative.
  const std::array<uint64_t, kBoundsMicros.size() + 1>& counts() const { return counts_; }
  uint64_t sum_micros() const { return sum_micros_; }

  // Appends the _bucket, _sum and _count lines of `name`, each with `labels` (`key="value"`
  // pairs, comma-separated, without braces).
  void AppendPrometheusText(absl::string_view name, absl::string_view labels,
                            std::string& out) const;

 private:
  // Observations per bucket (the last: above every bound), not yet cumulative.
  std::array<uint64_t, kBoundsMicros.size() + 1> counts_ = {};
  uint64_t count_ = 0;
  uint64_t sum_micros_ = 0;
};

class TaskMetrics {
 public:
  // One function's figures. Its address is stable for the life of the TaskMetrics, so that a
  // task keeps a pointer to them from submit to end instead of looking its name up again.
  struct Function {
    // Its label: the function's name, or kOther.
    std::string name;
    uint64_t accepted = 0;
    uint64_t succeeded = 0;
    uint64_t failed = 0;
    uint64_t cancelled = 0;
    uint64_t payload_bytes = 0;
    uint64_t result_bytes = 0;
    DurationHistogram queue_wait;
    DurationHistogram run_time;
  };

  // The label of the tasks whose function has none of its own.
  static constexpr char kOther[] = "other";
  static constexpr size_t kDefaultMaxFunctions = 1000;

  explicit TaskMetrics(absl::Time started, size_t max_functions = kDefaultMaxFunctions);

  // Gives the pool's function `name` figures of its own, labelled with its name, unless
  // max_functions already have some; returns them, or other()'s beyond that (and for a function
  // named "other"). Call it only for functions the pool has, never for a name a client sent.
  Function& AddFunction(absl::string_view name);
  // The figures of tasks whose function has none of its own: names the pool does not have, and
  // functions beyond max_functions.
  Function& other() { return *other_; }

  // A task of `function` was accepted, with this many bytes of input (payload, items or shared
  // memory object).
  void Accepted(Function& function, uint64_t payload_bytes);
  // A task was refused at submit with `code`.
  void Rejected(absl::StatusCode code);
  // A task of `function` ended at `now` with `outcome` (its state, result, queue and run time).
  void Ended(Function& function, const v1::TaskOutcome& outcome, absl::Time now);

  // Tasks ended since start, by end state, over all functions.
  struct Totals {
    uint64_t succeeded = 0;
    uint64_t failed = 0;
    uint64_t cancelled = 0;
  };
  Totals EndedTotals() const;

  // Tasks ended per second over the 10 s before `now` (over the time since start when shorter).
  double RecentTasksPerSecond(absl::Time now) const;

  // Calls `visit(const Function&)` for each function's figures, in name order, "other" among
  // them.
  template <typename Visit>
  void ForEachFunction(Visit visit) const {
    for (const auto& [name, function] : functions_) visit(*function);
  }

  // A copy of the figures, for formatting away from the owner's lock.
  struct Snapshot {
    // By name, in name order, "other" among them.
    std::vector<std::pair<std::string, Function>> functions;
    std::vector<std::pair<absl::StatusCode, uint64_t>> rejected;

    // Appends every metric above in the Prometheus text format (version 0.0.4), with HELP and
    // TYPE lines.
    void AppendPrometheusText(std::string& out) const;
  };
  // Copies: at most max_functions + 1 Functions of some 450 bytes each, and their names.
  Snapshot TakeSnapshot() const;

 private:
  static constexpr int kRateWindowSeconds = 10;

  const absl::Time started_;
  const size_t max_functions_;
  // By name, "other" among them; node-based, so that a Function never moves.
  std::map<std::string, std::unique_ptr<Function>, std::less<>> functions_;
  Function* const other_;
  std::map<absl::StatusCode, uint64_t> rejected_;
  // Tasks ended in each of the last seconds.
  SecondCounts<16> rate_;
};

// Bytes of input a task carries (payload, items or shared memory object).
uint64_t PayloadBytes(const v1::TaskSpec& spec);
// Bytes of results an outcome carries (result, items' results or shared memory object).
uint64_t ResultBytes(const v1::TaskOutcome& outcome);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_TASK_METRICS_H_
