#include "cli/top_view.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/pool_figures.h"

namespace mpigate::cli {
namespace {

// Characters (code points) in UTF-8 text: what a terminal shows of it, near enough.
size_t Columns(absl::string_view text) {
  size_t columns = 0;
  for (const char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++columns;
  }
  return columns;
}

// The first `columns` characters of `text`.
std::string Cut(absl::string_view text, size_t columns) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && seen++ == columns) {
      return std::string(text.substr(0, i));
    }
  }
  return std::string(text);
}

// `text` cut or padded to `columns` characters, on the right or (numbers) on the left.
std::string Fit(absl::string_view text, size_t columns, bool right) {
  std::string cut = Cut(text, columns);
  const std::string padding(columns - Columns(cut), ' ');
  return right ? padding + cut : cut + padding;
}

struct Column {
  const char* title;
  size_t width;
  bool right = false;
};

// One table row: cells in their columns, one space apart; the last column takes what is left.
std::string Row(const std::vector<Column>& columns, const std::vector<std::string>& cells) {
  std::string line;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) line += ' ';
    const std::string cell = Printable(cells[i]);
    line += i + 1 == columns.size() && !columns[i].right
                ? cell
                : Fit(cell, columns[i].width, columns[i].right);
  }
  return line;
}

std::string Heading(const std::vector<Column>& columns) {
  std::vector<std::string> titles;
  for (const Column& column : columns) titles.emplace_back(column.title);
  return Row(columns, titles);
}

// A titled table: its heading and rows.
struct Section {
  std::string heading;
  std::vector<std::string> rows;
  // Shown when it has no rows.
  std::string empty;
};

std::string StateText(const v1::PoolStatus& status) {
  std::string state = v1::PoolState_Name(status.state());
  if (absl::StartsWith(state, "POOL_STATE_")) state = state.substr(11);
  if (!status.state_reason().empty()) absl::StrAppend(&state, ": ", status.state_reason());
  if (!status.degraded_reason().empty()) {
    absl::StrAppend(&state, ", degraded: ", status.degraded_reason());
  }
  return state;
}

std::string Session(absl::string_view client_name, uint64_t session_id) {
  return absl::StrCat(client_name.empty() ? "(unnamed)" : client_name, " #", session_id);
}

Section Workers(const v1::PoolStatus& status) {
  const std::vector<Column> columns = {{"WORKER", 6, true}, {"HOST", 12},      {"PID", 8, true},
                                       {"RUNNER", 8, true}, {"STATE", 5},      {"FUNCTION", 14},
                                       {"FOR", 9, true},    {"DONE", 8, true}, {"FAILED", 6, true},
                                       {"SESSION", 0}};
  Section section{Heading(columns), {}, "  no workers"};
  for (const v1::WorkerStatus* worker : WorkersBusiestFirst(status)) {
    const bool busy = worker->busy();
    section.rows.push_back(
        Row(columns,
            {absl::StrCat(worker->worker()), worker->host(),
             worker->pid() > 0 ? absl::StrCat(worker->pid()) : "-",
             worker->runner_pid() > 0 ? absl::StrCat(worker->runner_pid()) : "-",
             busy ? "busy" : (worker->down() ? "down" : "idle"), busy ? worker->function() : "",
             busy ? FormatMicros(worker->running_ms() * 1000) : "",
             absl::StrCat(worker->tasks_done()), absl::StrCat(worker->tasks_failed()),
             busy ? absl::StrCat(Session(worker->client_name(), worker->session_id()),
                                 worker->backlog() > 0 ? absl::StrCat(" +", worker->backlog()) : "")
                  : ""}));
  }
  return section;
}

Section Sessions(const v1::PoolStatus& status) {
  const std::vector<Column> columns = {
      {"SESSION", 7, true}, {"QUEUED", 8, true},  {"RUNNING", 7, true}, {"DONE", 9, true},
      {"FAILED", 7, true},  {"TASKS/S", 8, true}, {"CLIENT", 0}};
  Section section{Heading(columns), {}, "  no sessions"};
  for (const v1::SessionStatus* session : SessionsBusiestFirst(status)) {
    section.rows.push_back(
        Row(columns,
            {absl::StrCat(session->session_id()), absl::StrCat(session->queued_tasks()),
             absl::StrCat(session->running_tasks()), absl::StrCat(session->tasks_succeeded()),
             absl::StrCat(session->tasks_failed()), FormatRate(session->recent_tasks_per_second()),
             absl::StrCat(session->client_name(), session->detached() ? " (detached)" : "")}));
  }
  return section;
}

Section Functions(const v1::PoolStatus& status) {
  const std::vector<Column> columns = {
      {"FUNCTION", 16},      {"DONE", 9, true},      {"FAILED", 7, true},   {"RUN p50", 10, true},
      {"RUN p99", 10, true}, {"WAIT p50", 10, true}, {"WAIT p99", 10, true}};
  Section section{Heading(columns), {}, "  no task has ended yet"};
  const auto& bounds = status.time_bucket_bounds_us();
  const uint64_t largest = bounds.empty() ? 0 : bounds[bounds.size() - 1];
  const auto quantile = [&](const google::protobuf::RepeatedField<uint64_t>& counts, double q) {
    return FormatQuantile(QuantileMicros(counts, bounds, q), largest);
  };
  std::vector<const v1::FunctionTimes*> functions;
  for (const v1::FunctionTimes& times : status.function_times()) functions.push_back(&times);
  // The most used first.
  std::stable_sort(functions.begin(), functions.end(), [](const auto* a, const auto* b) {
    return a->succeeded() + a->failed() > b->succeeded() + b->failed();
  });
  for (const v1::FunctionTimes* times : functions) {
    section.rows.push_back(Row(
        columns,
        {times->name(), absl::StrCat(times->succeeded()), absl::StrCat(times->failed()),
         quantile(times->run_time_counts(), 0.5), quantile(times->run_time_counts(), 0.99),
         quantile(times->queue_wait_counts(), 0.5), quantile(times->queue_wait_counts(), 0.99)}));
  }
  return section;
}

Section Failures(const v1::PoolStatus& status, absl::Time now) {
  Section section{"RECENT FAILURES", {}, "  none"};
  for (const v1::FailureRecord& failure : status.recent_failures()) {
    const int64_t ago =
        std::max<int64_t>(absl::ToInt64Seconds(now - absl::FromUnixMillis(failure.unix_ms())), 0);
    section.rows.push_back(Printable(absl::StrCat(
        Fit(absl::StrCat(ago < 60 ? absl::StrCat(ago, "s")
                                  : FormatMicros(static_cast<uint64_t>(ago) * 1'000'000),
                         " ago"),
            10, true),
        "  ", Session(failure.client_name(), failure.session_id()), " task ", failure.task_id(),
        " ", failure.function(),
        failure.worker() >= 0 ? absl::StrCat(" on worker ", failure.worker()) : "", ": ",
        failure.code(), ": ", failure.message())));
  }
  return section;
}

}  // namespace

std::string Printable(absl::string_view text) {
  std::string shown;
  shown.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n' || c == '\t' || c == '\r') {
      shown += ' ';
    } else if (c < 0x20 || c == 0x7F) {
      shown += '?';
    } else if (c == 0xC2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      // U+0080-U+009F, the C1 controls (CSI among them), encoded as C2 80-9F.
      shown += '?';
      ++i;
    } else {
      shown += static_cast<char>(c);
    }
  }
  return shown;
}

std::string Sparkline(const std::vector<uint32_t>& values) {
  static constexpr const char* kBars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  const uint32_t peak = values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  std::string line;
  for (const uint32_t value : values) {
    const size_t level = peak == 0 ? 0 : (static_cast<uint64_t>(value) * 7 + peak - 1) / peak;
    line += kBars[std::min<size_t>(level, 7)];
  }
  return line;
}

std::vector<std::string> TopFrame(const v1::PoolStatus& status, absl::string_view target,
                                  TopSize size, absl::Time now) {
  const size_t width = static_cast<size_t>(std::max(size.width, 20));
  const size_t height = static_cast<size_t>(std::max(size.height, 1));
  uint32_t busy = 0;
  uint32_t down = 0;
  for (const v1::WorkerStatus& worker : status.worker_list()) {
    if (worker.busy()) ++busy;
    if (worker.down()) ++down;
  }
  const int seconds = status.tasks_ended_per_second_size();
  const int shown_seconds = std::min(seconds, 60);
  std::vector<uint32_t> last(status.tasks_ended_per_second().end() - shown_seconds,
                             status.tasks_ended_per_second().end());
  const uint32_t peak = last.empty() ? 0 : *std::max_element(last.begin(), last.end());
  std::vector<std::string> header = {
      Printable(absl::StrCat("mpigate top  ", target, "  ", StateText(status), "  up ",
                             FormatMicros(status.uptime_ms() * 1000))),
      absl::StrFormat("workers %u: %u busy, %u idle, %u down   queued %u   sessions %u",
                      status.workers(), busy, status.workers() - busy - down, down,
                      status.queued_tasks(), status.sessions()),
      absl::StrCat("tasks/s ", FormatRate(status.recent_tasks_per_second()), "  last ",
                   shown_seconds, " s ", Sparkline(last), " peak ", peak, "/s"),
      absl::StrFormat("ended: %u succeeded, %u failed, %u cancelled   (q quits)",
                      status.tasks_succeeded(), status.tasks_failed(), status.tasks_cancelled()),
  };
  std::vector<Section> sections = {Workers(status), Sessions(status), Functions(status),
                                   Failures(status, now)};

  // Each section takes its heading, a blank line before it, and its rows (or its "empty" line);
  // rows are handed out one per section in turn while lines remain, so that a long list of
  // workers does not push the failures off the screen.
  const size_t fixed = header.size() + 2 * sections.size();
  size_t left = height > fixed ? height - fixed : 0;
  std::vector<size_t> shown(sections.size(), 0);
  for (size_t section = 0; section < sections.size(); ++section) {
    if (sections[section].rows.empty() && left > 0) --left;  // Its "empty" line.
  }
  for (bool given = true; given && left > 0;) {
    given = false;
    for (size_t section = 0; section < sections.size() && left > 0; ++section) {
      if (shown[section] < sections[section].rows.size()) {
        ++shown[section];
        --left;
        given = true;
      }
    }
  }
  std::vector<std::string> lines = std::move(header);
  for (size_t section = 0; section < sections.size(); ++section) {
    const Section& each = sections[section];
    lines.emplace_back();
    lines.push_back(each.heading);
    if (each.rows.empty()) {
      lines.push_back(each.empty);
      continue;
    }
    const size_t rows = each.rows.size();
    for (size_t row = 0; row < shown[section]; ++row) {
      // The last row shown says how many did not fit.
      if (row + 1 == shown[section] && shown[section] < rows) {
        lines.push_back(absl::StrCat("  ... ", rows - row, " more"));
      } else {
        lines.push_back(each.rows[row]);
      }
    }
  }
  if (lines.size() > height) lines.resize(height);
  for (std::string& line : lines) {
    line = Cut(line, width);
    line.erase(line.find_last_not_of(' ') + 1);
  }
  return lines;
}

}  // namespace mpigate::cli
