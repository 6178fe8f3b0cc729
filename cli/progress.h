// Progress of `mpigate map`: the rate and ETA arithmetic, and the text of the progress bar, the
// plain progress line and the summary. Pure: the caller passes the clock's readings in, so every
// figure is unit tested; the thread that redraws and the terminal stay in cli/map_command.cc.
//
//   RateMeter rate;
//   rate.Record(now, done);                                  // at every redraw
//   ProgressSnapshot snapshot{.total = n, .done = done, .failed = failed,
//                             .items_per_second = rate.ItemsPerSecond()};
//   std::string bar = FormatProgressBar(snapshot, terminal_columns);
//
// Thread-safety: RateMeter is used by one thread at a time; the functions are pure.
#ifndef MPIGATE_CLI_PROGRESS_H_
#define MPIGATE_CLI_PROGRESS_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mpigate::cli {

// How often the progress is redrawn: in place on a terminal, as a new line elsewhere (a log file
// grows by one line every 10 s of a long map, and a short map prints only its summary).
inline constexpr absl::Duration kTerminalRedrawInterval = absl::Milliseconds(100);
inline constexpr absl::Duration kPlainProgressInterval = absl::Seconds(10);

// Items per second over a sliding window of recent samples, so that the rate follows a map that
// speeds up or slows down instead of averaging over its whole run.
class RateMeter {
 public:
  explicit RateMeter(absl::Duration window = absl::Seconds(5)) : window_(window) {}

  // `done` items had ended at `now`. Times must not go backwards; counts must not fall.
  void Record(absl::Time now, size_t done);

  // Over the samples of the last window (and the one just before it, so that the span covers the
  // window): 0 until two samples are apart in time.
  double ItemsPerSecond() const;

 private:
  absl::Duration window_;
  std::deque<std::pair<absl::Time, size_t>> samples_;
};

struct ProgressSnapshot {
  size_t total = 0;
  // Items ended, failed ones included.
  size_t done = 0;
  size_t failed = 0;
  double items_per_second = 0;
};

// How long the rest takes at `items_per_second`: zero when nothing remains, nullopt when the rate
// is not known yet (zero).
std::optional<absl::Duration> EstimateRemaining(const ProgressSnapshot& snapshot);

// "4s", "1m05s", "2h03m": whole seconds, two units at most.
std::string FormatShortDuration(absl::Duration duration);

// "0.5/s", "42/s", "1234/s", "12.3k/s", "4.5M/s".
std::string FormatRate(double items_per_second);

// One terminal line, at most `columns` wide when `columns` leaves room for the figures:
// "[#######-------------]  1234/10000  12%  failed 3  2.3k/s  ETA 4s". The bar shrinks to fit,
// and is left out below 10 columns of it.
std::string FormatProgressBar(const ProgressSnapshot& snapshot, int columns);

// A line for a log: "mpigate: map: 1234/10000 done, 3 failed, 2.3k/s, ETA 4s".
std::string FormatProgressLine(const ProgressSnapshot& snapshot);

// The last line of a map: "mpigate: map echo: 10000 items, 9997 succeeded, 3 failed in 4.21s
// (2375/s)".
std::string FormatSummary(absl::string_view function, const ProgressSnapshot& snapshot,
                          absl::Duration elapsed);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_PROGRESS_H_
