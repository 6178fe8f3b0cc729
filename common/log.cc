#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mpigate {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

// Never destroyed: threads may still log while the process exits.
std::string& Program() {
  static std::string* const program = new std::string("mpigate");
  return *program;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("a log level is debug, info, warning or error, not '", name, "'"));
}

void SetLogProgram(std::string program) { Program() = std::move(program); }

void SetLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed);
}

void WriteLogLine(LogLevel level, absl::string_view message) {
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone()), " ",
                   LevelName(level), " ", Program(), ": ", message, "\n");
  // One write per line: lines of different threads (and processes sharing stderr) stay whole.
  for (absl::string_view rest = line; !rest.empty();) {
    const ssize_t written = write(STDERR_FILENO, rest.data(), rest.size());
    if (written <= 0) return;
    rest.remove_prefix(static_cast<size_t>(written));
  }
}

LogThrottle::LogThrottle(Options options) : options_(std::move(options)) {}

bool LogThrottle::Admit() {
  std::string summary;
  bool admitted = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    if (now - interval_start_ >= options_.interval) {
      if (suppressed_ > 0) {
        summary = absl::StrCat(options_.what, ": ", suppressed_, " more not logged in the last ",
                               absl::FormatDuration(now - interval_start_));
      }
      interval_start_ = now;
      lines_ = 0;
      suppressed_ = 0;
    }
    if (lines_ < options_.max_lines) {
      ++lines_;
      admitted = true;
    } else {
      ++suppressed_;
    }
  }
  if (!summary.empty()) WriteLogLine(options_.level, summary);
  return admitted;
}

}  // namespace mpigate
