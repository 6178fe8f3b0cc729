#include "cli/progress.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mpigate::cli {
namespace {

// The figures after the bar: "  1234/10000  12%  failed 3  2.3k/s  ETA 4s".
std::string Figures(const ProgressSnapshot& snapshot) {
  const int percent =
      snapshot.total == 0 ? 100 : static_cast<int>(snapshot.done * 100 / snapshot.total);
  const std::optional<absl::Duration> remaining = EstimateRemaining(snapshot);
  return absl::StrFormat("  %u/%u  %3d%%  failed %u  %s  ETA %s", snapshot.done, snapshot.total,
                         percent, snapshot.failed, FormatRate(snapshot.items_per_second),
                         remaining.has_value() ? FormatShortDuration(*remaining) : "--");
}

}  // namespace

void RateMeter::Record(absl::Time now, size_t done) {
  samples_.emplace_back(now, done);
  // Keep one sample at or before the window's start, so that the rate spans the whole window.
  while (samples_.size() > 2 && samples_[1].first <= now - window_) samples_.pop_front();
}

double RateMeter::ItemsPerSecond() const {
  if (samples_.size() < 2) return 0;
  const double seconds = absl::ToDoubleSeconds(samples_.back().first - samples_.front().first);
  if (seconds <= 0) return 0;
  return static_cast<double>(samples_.back().second - samples_.front().second) / seconds;
}

std::optional<absl::Duration> EstimateRemaining(const ProgressSnapshot& snapshot) {
  const size_t remaining = snapshot.total > snapshot.done ? snapshot.total - snapshot.done : 0;
  if (remaining == 0) return absl::ZeroDuration();
  if (snapshot.items_per_second <= 0) return std::nullopt;
  return absl::Seconds(static_cast<double>(remaining) / snapshot.items_per_second);
}

std::string FormatShortDuration(absl::Duration duration) {
  // Rounded up: an ETA of 0.2 s reads "1s", not "0s", until the map is done.
  const int64_t seconds = absl::ToInt64Seconds(absl::Ceil(duration, absl::Seconds(1)));
  if (seconds < 60) return absl::StrCat(std::max<int64_t>(seconds, 0), "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  return absl::StrFormat("%dh%02dm", seconds / 3600, seconds / 60 % 60);
}

std::string FormatRate(double items_per_second) {
  if (!(items_per_second > 0)) return "0/s";
  if (items_per_second < 10) return absl::StrFormat("%.1f/s", items_per_second);
  if (items_per_second < 10'000) return absl::StrFormat("%.0f/s", items_per_second);
  if (items_per_second < 10'000'000) return absl::StrFormat("%.1fk/s", items_per_second / 1e3);
  return absl::StrFormat("%.1fM/s", items_per_second / 1e6);
}

std::string FormatProgressBar(const ProgressSnapshot& snapshot, int columns) {
  constexpr int kMinBar = 10;
  constexpr int kMaxBar = 40;
  const std::string figures = Figures(snapshot);
  // "[" + bar + "]" + figures, leaving the last column free: a line that fills the terminal's
  // width wraps on some terminals, and a wrapped bar is not redrawn in place.
  const int bar = std::min(kMaxBar, columns - 3 - static_cast<int>(figures.size()));
  if (bar < kMinBar) return figures.substr(2);
  const int filled =
      snapshot.total == 0
          ? bar
          : static_cast<int>(snapshot.done * static_cast<size_t>(bar) / snapshot.total);
  return absl::StrCat("[", std::string(static_cast<size_t>(filled), '#'),
                      std::string(static_cast<size_t>(bar - filled), '-'), "]", figures);
}

std::string FormatProgressLine(const ProgressSnapshot& snapshot) {
  const std::optional<absl::Duration> remaining = EstimateRemaining(snapshot);
  return absl::StrFormat("mpigate: map: %u/%u done, %u failed, %s, ETA %s", snapshot.done,
                         snapshot.total, snapshot.failed, FormatRate(snapshot.items_per_second),
                         remaining.has_value() ? FormatShortDuration(*remaining) : "--");
}

std::string FormatSummary(absl::string_view function, const ProgressSnapshot& snapshot,
                          absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(snapshot.done) / seconds : 0;
  return absl::StrFormat("mpigate: map %s: %u item%s, %u succeeded, %u failed in %.2fs (%s)",
                         function, snapshot.total, snapshot.total == 1 ? "" : "s",
                         snapshot.done - snapshot.failed, snapshot.failed, seconds,
                         FormatRate(rate));
}

}  // namespace mpigate::cli
