// What `mpigate top` draws: one frame of a PoolStatus as lines of text that fit a terminal of a
// given size. Pure, so that the layout is unit tested without a service or a terminal.
//
//   for (const std::string& line : TopFrame(status, target, {.width = 100, .height = 30})) ...
//
// The frame: a header (target, state and why, workers busy/idle/down, queued, sessions, tasks/s
// with the last minute as a sparkline, tasks ended by state), then the workers busiest first,
// the sessions busiest first, each function's run time and queue wait quantiles, and the latest
// failures with their messages. When the sections do not fit, each keeps its first rows and says
// how many more it has. Strings from the service (client names, function names, messages) are
// shown with their control characters replaced, so that they cannot move the cursor or change
// the terminal.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_CLI_TOP_VIEW_H_
#define MPIGATE_CLI_TOP_VIEW_H_

#include <limits>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::cli {

struct TopSize {
  // Columns: no line is wider (in characters; a line is cut to fit).
  int width = 80;
  // Lines: the frame has at most this many; unlimited for `--once`.
  int height = std::numeric_limits<int>::max();
};

// The frame's lines, without newlines. `now` dates the failures ("12s ago").
std::vector<std::string> TopFrame(const v1::PoolStatus& status, absl::string_view target,
                                  TopSize size, absl::Time now);

// `text` with each control character (C0, DEL, C1) as '?', and newlines and tabs as spaces.
std::string Printable(absl::string_view text);

// The last `count` (or fewer) values as a bar per value, "▁" to "█", scaled to the largest.
std::string Sparkline(const std::vector<uint32_t>& values);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_TOP_VIEW_H_
