// Log: the service's event log, one line per event on stderr.
//
// A line reads "2026-12-03T18:40:00.123456Z INFO mpigate-server: session 3 opened (...)": a UTC
// timestamp, the level, the program and the event. Events that matter to an operator (start,
// workers up, a task runner lost, sessions opened and closed, drain, stop) are INFO; what a
// running service should not print by default (each Run call's session) is DEBUG. The level is
// set once, at start, from the program's --log_level flag; lines below it cost one comparison.
//
// Thread-safety: any thread may log; each line is written with one write(2), so lines from
// different threads never interleave. SetLogLevel() is for start-up, before other threads log.
#ifndef MPIGATE_COMMON_LOG_H_
#define MPIGATE_COMMON_LOG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

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

}  // namespace mpigate

#endif  // MPIGATE_COMMON_LOG_H_
