#include "cli/status_text.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace mpigate::cli {
namespace {

// The labels of the summary rows are padded to one width, so that the values line up.
constexpr int kLabelWidth = 11;

std::string Row(absl::string_view label, absl::string_view value) {
  return absl::StrFormat("%-*s%s\n", kLabelWidth, label, value);
}

std::string StateText(const v1::PoolStatus& status) {
  std::string state = v1::PoolState_Name(status.state());
  if (absl::StartsWith(state, "POOL_STATE_")) state = state.substr(11);
  // A service from before PoolStatus.state said only whether it drained.
  if (status.state() == v1::POOL_STATE_UNSPECIFIED)
    state = status.draining() ? "DRAINING" : "READY";
  if (!status.state_reason().empty()) absl::StrAppend(&state, ": ", status.state_reason());
  // Serving on with fewer workers while lost ones are replaced.
  if (!status.degraded_reason().empty()) {
    absl::StrAppend(&state, ", degraded: ", status.degraded_reason());
  }
  return state;
}

// A table whose columns are as wide as their widest cell, indented under its section's title.
// A column marked in `right_aligned` holds numbers.
std::string Table(const std::vector<std::vector<std::string>>& rows,
                  const std::vector<bool>& right_aligned) {
  std::vector<size_t> widths(right_aligned.size(), 0);
  for (const std::vector<std::string>& row : rows) {
    for (size_t column = 0; column < row.size(); ++column) {
      widths[column] = std::max(widths[column], row[column].size());
    }
  }
  std::string text;
  for (const std::vector<std::string>& row : rows) {
    // Indented by two, columns two apart.
    std::string line;
    for (size_t column = 0; column < row.size(); ++column) {
      const bool last = column + 1 == row.size();
      const int width = static_cast<int>(widths[column]);
      if (right_aligned[column]) {
        absl::StrAppendFormat(&line, "  %*s", width, row[column]);
      } else if (last) {
        absl::StrAppend(&line, "  ", row[column]);
      } else {
        absl::StrAppendFormat(&line, "  %-*s", width, row[column]);
      }
    }
    // Padding of empty trailing cells is not worth keeping.
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&text, line, "\n");
  }
  return text;
}

}  // namespace

std::string FormatUptime(absl::Duration uptime) {
  const int64_t seconds = std::max<int64_t>(absl::ToInt64Seconds(uptime), 0);
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  if (seconds < 86400) {
    return absl::StrFormat("%dh%02dm%02ds", seconds / 3600, seconds / 60 % 60, seconds % 60);
  }
  return absl::StrFormat("%dd%02dh%02dm", seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60);
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatPoolStatus(const v1::PoolStatus& status, absl::string_view endpoint) {
  // A lost worker not yet replaced is neither busy nor idle.
  const uint32_t serving =
      status.workers() > status.workers_down() ? status.workers() - status.workers_down() : 0;
  const uint32_t idle = serving > status.busy_workers() ? serving - status.busy_workers() : 0;
  std::string workers =
      absl::StrFormat("%u: %u busy, %u idle", status.workers(), status.busy_workers(), idle);
  if (status.workers_down() > 0) absl::StrAppend(&workers, ", ", status.workers_down(), " down");
  std::string text;
  absl::StrAppend(
      &text, Row("endpoint", endpoint), Row("state", StateText(status)), Row("workers", workers),
      Row("queued", absl::StrCat(status.queued_tasks(), " tasks")),
      Row("tasks/s", absl::StrFormat("%.1f over the last 10 s", status.recent_tasks_per_second())),
      Row("uptime", FormatUptime(absl::Milliseconds(status.uptime_ms()))),
      Row("ended",
          absl::StrFormat("%u succeeded, %u failed, %u cancelled", status.tasks_succeeded(),
                          status.tasks_failed(), status.tasks_cancelled())));

  absl::StrAppend(&text, "\n", Row("sessions", absl::StrCat(status.session_list_size())));
  if (status.session_list_size() > 0) {
    std::vector<std::vector<std::string>> rows = {
        {"ID", "CLIENT", "QUEUED", "RUNNING", "UNREAD", ""}};
    for (const v1::SessionStatus& session : status.session_list()) {
      rows.push_back({absl::StrCat(session.session_id()),
                      session.client_name().empty() ? "-" : session.client_name(),
                      absl::StrCat(session.queued_tasks()),
                      // With its cap (OpenSession.max_running_tasks), if it has one.
                      session.max_running_tasks() > 0
                          ? absl::StrCat(session.running_tasks(), "/", session.max_running_tasks())
                          : absl::StrCat(session.running_tasks()),
                      FormatBytes(session.unread_result_bytes()),
                      session.detached() ? "detached" : ""});
    }
    absl::StrAppend(&text, Table(rows, {true, false, true, true, true, false}));
  }

  absl::StrAppend(&text, "\n", Row("functions", absl::StrCat(status.functions_size())));
  if (status.functions_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const v1::FunctionInfo& function : status.functions()) {
      std::vector<std::string> notes;
      if (function.gang()) notes.push_back("[gang]");
      if (!function.request_type().empty() || !function.response_type().empty()) {
        notes.push_back(absl::StrCat(function.request_type(), " -> ", function.response_type()));
      }
      if (!function.description().empty()) notes.push_back(function.description());
      rows.push_back({function.name(), absl::StrJoin(notes, "  ")});
    }
    absl::StrAppend(&text, Table(rows, {false, false}));
  }
  return text;
}

}  // namespace mpigate::cli
