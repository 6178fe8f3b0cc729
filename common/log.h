// Log: the service's event log, one line per event on stderr.
//
// A line reads "2026-12-03T18:40:00.123456Z INFO mpigate-server: session 3 opened (...)": a UTC
// timestamp, the level, the program and the event. Events that matter to an operator (start,
// workers up, a task runner lost, sessions opened and closed, drain, stop) are INFO; what a
// running service should not print by default (each Run call's session) is DEBUG. The level is
// set once, at start, from the program's --log_level flag; lines below it cost one comparison.
//
// Events an outsider can cause at will (a refused call) go through a LogThrottle, so that they
// cannot flood the log.
//
// Thread-safety: any thread may log; each line is written with one write(2), so lines from
// different threads never interleave. SetLogLevel() is for start-up, before other threads log.
// A LogThrottle is thread-safe.
#ifndef MPIGATE_COMMON_LOG_H_
#define MPIGATE_COMMON_LOG_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mpigate {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" (or "warn") or "error"; INVALID_ARGUMENT otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);

// The program name in each line, and the lowest level written (INFO by default).
void SetLogProgram(std::string program);
void SetLogLevel(LogLevel level);

bool LogEnabled(LogLevel level);

// Writes one line: the timestamp, level and program, then the pieces of `message`.
void WriteLogLine(LogLevel level, absl::string_view message);

template <typename... Pieces>
void Log(LogLevel level, const Pieces&... pieces) {
  if (LogEnabled(level)) WriteLogLine(level, absl::StrCat(pieces...));
}

// Logs one kind of event at most `max_lines` times per `interval`, as the kernel's printk
// ratelimit does. The events beyond it are counted, not written, and the first event after the
// interval has passed writes, before its own line, one that says how many were left out:
// "<what>: 19980 more not logged in the last 2.8s". A burst that stops for good thus leaves its
// count unreported until the next such event; the count is never lost.
class LogThrottle {
 public:
  struct Options {
    LogLevel level = LogLevel::kWarning;
    // Names the events in the summary line, e.g. "refused calls".
    std::string what;
    int max_lines = 10;
    absl::Duration interval = absl::Seconds(10);
    // Tests pass a fake.
    std::function<absl::Time()> clock = [] { return absl::Now(); };
  };

  explicit LogThrottle(Options options);
  LogThrottle(const LogThrottle&) = delete;
  LogThrottle& operator=(const LogThrottle&) = delete;

  template <typename... Pieces>
  void Log(const Pieces&... pieces) {
    if (LogEnabled(options_.level) && Admit())
      WriteLogLine(options_.level, absl::StrCat(pieces...));
  }

 private:
  // Whether this event's line is written; writes the summary of the interval that has ended.
  bool Admit();

  const Options options_;
  absl::Mutex mu_;
  absl::Time interval_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int lines_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mpigate

#endif  // MPIGATE_COMMON_LOG_H_
