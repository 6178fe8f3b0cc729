#include "server/live_page/live_page.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/pool_figures.h"
#include "server/live_page/assets.h"

namespace mpigate::server {
namespace {

// The page loads its script and style from this server and talks only to it; nothing inline.
constexpr char kPageHeaders[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'\r\nReferrer-Policy: no-referrer\r\n";

std::string StateName(v1::PoolState state) {
  std::string name = v1::PoolState_Name(state);
  if (absl::StartsWith(name, "POOL_STATE_")) name = name.substr(11);
  return name;
}

// A summary entry: <div><dt>label</dt><dd id="s-ID">value</dd></div>.
void AppendFigure(absl::string_view id, absl::string_view label, absl::string_view value,
                  std::string& out) {
  absl::StrAppend(&out, "<div><dt>", label, "</dt><dd id=\"s-", id, "\">", EscapeHtml(value),
                  "</dd></div>");
}

// <td data-col="COLUMN">value</td>, escaped.
void AppendCell(absl::string_view column, absl::string_view value, std::string& out) {
  absl::StrAppend(&out, "<td data-col=\"", column, "\">", EscapeHtml(value), "</td>");
}

void AppendHead(std::initializer_list<absl::string_view> columns, std::string& out) {
  out += "<thead><tr>";
  for (const absl::string_view column : columns) absl::StrAppend(&out, "<th>", column, "</th>");
  out += "</tr></thead>";
}

std::string SessionLabel(absl::string_view client_name, uint64_t session_id) {
  return absl::StrCat(client_name.empty() ? "(unnamed)" : client_name, " #", session_id);
}

void AppendSummary(const v1::PoolStatus& status, std::string& out) {
  uint32_t busy = 0;
  uint32_t down = 0;
  for (const v1::WorkerStatus& worker : status.worker_list()) {
    if (worker.busy()) ++busy;
    if (worker.down()) ++down;
  }
  out += "<dl id=\"summary\">";
  AppendFigure("workers", "workers", absl::StrCat(status.workers()), out);
  AppendFigure("busy", "busy", absl::StrCat(busy), out);
  AppendFigure("idle", "idle", absl::StrCat(status.workers() - busy - down), out);
  AppendFigure("down", "down", absl::StrCat(down), out);
  AppendFigure("queued", "queued", absl::StrCat(status.queued_tasks()), out);
  AppendFigure("sessions", "sessions", absl::StrCat(status.sessions()), out);
  AppendFigure("rate", "tasks/s (10 s)", FormatRate(status.recent_tasks_per_second()), out);
  AppendFigure("succeeded", "succeeded", absl::StrCat(status.tasks_succeeded()), out);
  AppendFigure("failed", "failed", absl::StrCat(status.tasks_failed()), out);
  AppendFigure("cancelled", "cancelled", absl::StrCat(status.tasks_cancelled()), out);
  AppendFigure("uptime", "uptime", FormatMicros(status.uptime_ms() * 1000), out);
  out += "</dl>";
}

void AppendChartNote(const v1::PoolStatus& status, std::string& out) {
  uint64_t last_minute = 0;
  uint32_t peak = 0;
  const int size = status.tasks_ended_per_second_size();
  for (int i = 0; i < size; ++i) {
    const uint32_t count = status.tasks_ended_per_second(i);
    peak = std::max(peak, count);
    if (i >= size - 60) last_minute += count;
  }
  absl::StrAppend(&out, "<p id=\"chart-note\">", last_minute, " tasks ended in the last minute; ",
                  "peak ", peak, "/s over the last ", size, " s.</p>");
}

void AppendWorkers(const v1::PoolStatus& status, std::string& out) {
  out += "<table id=\"workers\">";
  AppendHead({"worker", "host", "pid", "runner", "state", "function", "session", "for", "backlog",
              "done", "failed"},
             out);
  out += "<tbody>";
  for (const v1::WorkerStatus* worker : WorkersBusiestFirst(status)) {
    const std::string state = worker->busy() ? "busy" : (worker->down() ? "down" : "idle");
    absl::StrAppend(&out, "<tr data-worker=\"", worker->worker(), "\" class=\"", state, "\">");
    AppendCell("worker", absl::StrCat(worker->worker()), out);
    AppendCell("host", worker->host(), out);
    AppendCell("pid", worker->pid() > 0 ? absl::StrCat(worker->pid()) : "-", out);
    AppendCell("runner", worker->runner_pid() > 0 ? absl::StrCat(worker->runner_pid()) : "-", out);
    AppendCell("state", state, out);
    AppendCell("function", worker->busy() ? worker->function() : "", out);
    AppendCell("session",
               worker->busy() ? SessionLabel(worker->client_name(), worker->session_id()) : "",
               out);
    AppendCell("for", worker->busy() ? FormatMicros(worker->running_ms() * 1000) : "", out);
    AppendCell("backlog", worker->busy() ? absl::StrCat(worker->backlog()) : "", out);
    AppendCell("done", absl::StrCat(worker->tasks_done()), out);
    AppendCell("failed", absl::StrCat(worker->tasks_failed()), out);
    out += "</tr>";
  }
  out += "</tbody></table>";
}

void AppendSessions(const v1::PoolStatus& status, std::string& out) {
  out += "<table id=\"sessions\">";
  AppendHead({"session", "client", "queued", "running", "done", "failed", "cancelled", "tasks/s",
              "stream"},
             out);
  out += "<tbody>";
  for (const v1::SessionStatus* session : SessionsBusiestFirst(status)) {
    absl::StrAppend(&out, "<tr data-session=\"", session->session_id(), "\">");
    AppendCell("session", absl::StrCat(session->session_id()), out);
    AppendCell("client", session->client_name(), out);
    AppendCell("queued", absl::StrCat(session->queued_tasks()), out);
    AppendCell("running", absl::StrCat(session->running_tasks()), out);
    AppendCell("done", absl::StrCat(session->tasks_succeeded()), out);
    AppendCell("failed", absl::StrCat(session->tasks_failed()), out);
    AppendCell("cancelled", absl::StrCat(session->tasks_cancelled()), out);
    AppendCell("rate", FormatRate(session->recent_tasks_per_second()), out);
    AppendCell("stream", session->detached() ? "detached" : "attached", out);
    out += "</tr>";
  }
  out += "</tbody></table>";
}

void AppendFunctions(const v1::PoolStatus& status, std::string& out) {
  const auto& bounds = status.time_bucket_bounds_us();
  const uint64_t largest = bounds.empty() ? 0 : bounds[bounds.size() - 1];
  out += "<table id=\"functions\">";
  AppendHead({"function", "succeeded", "failed", "cancelled", "queue wait p50", "p99", "queue wait",
              "run time p50", "p99", "run time"},
             out);
  out += "<tbody>";
  for (const v1::FunctionTimes& times : status.function_times()) {
    out += "<tr>";
    AppendCell("function", times.name(), out);
    AppendCell("succeeded", absl::StrCat(times.succeeded()), out);
    AppendCell("failed", absl::StrCat(times.failed()), out);
    AppendCell("cancelled", absl::StrCat(times.cancelled()), out);
    AppendCell("wait-p50",
               FormatQuantile(QuantileMicros(times.queue_wait_counts(), bounds, 0.5), largest),
               out);
    AppendCell("wait-p99",
               FormatQuantile(QuantileMicros(times.queue_wait_counts(), bounds, 0.99), largest),
               out);
    // The script draws the distributions here.
    AppendCell("wait-histogram", "", out);
    AppendCell("run-p50",
               FormatQuantile(QuantileMicros(times.run_time_counts(), bounds, 0.5), largest), out);
    AppendCell("run-p99",
               FormatQuantile(QuantileMicros(times.run_time_counts(), bounds, 0.99), largest), out);
    AppendCell("run-histogram", "", out);
    out += "</tr>";
  }
  out += "</tbody></table>";
}

void AppendFailures(const v1::PoolStatus& status, std::string& out) {
  out += "<table id=\"failures\">";
  AppendHead({"when (UTC)", "session", "task", "function", "worker", "code", "message"}, out);
  out += "<tbody>";
  for (const v1::FailureRecord& failure : status.recent_failures()) {
    out += "<tr>";
    AppendCell("when",
               absl::FormatTime("%H:%M:%E3S", absl::FromUnixMillis(failure.unix_ms()),
                                absl::UTCTimeZone()),
               out);
    AppendCell("session", SessionLabel(failure.client_name(), failure.session_id()), out);
    AppendCell("task", absl::StrCat(failure.task_id()), out);
    AppendCell("function", failure.function(), out);
    AppendCell("worker", failure.worker() >= 0 ? absl::StrCat(failure.worker()) : "-", out);
    AppendCell("code", failure.code(), out);
    AppendCell("message", failure.message(), out);
    out += "</tr>";
  }
  out += "</tbody></table>";
}

// /api/status's body: the JSON, or an error the page's script shows while keeping the figures it
// has.
std::string StatusBody(const v1::PoolStatus& status) {
  absl::StatusOr<std::string> json = PoolStatusJson(status, JsonLayout::kCompact);
  if (json.ok()) return *std::move(json);
  return "{\"error\":\"the status does not print as JSON\"}";
}

}  // namespace

std::string EscapeHtml(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      case '\'':
        escaped += "&#39;";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

std::string RenderLivePage(const v1::PoolStatus& status) {
  const std::string state = StateName(status.state());
  std::string why = status.state_reason();
  if (!status.degraded_reason().empty()) {
    absl::StrAppend(&why, why.empty() ? "" : "; ", "degraded: ", status.degraded_reason());
  }
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>mpigate: ",
      state,
      "</title><link rel=\"stylesheet\" href=\"/live.css\"></head>\n<body>"
      "<header><h1>mpigate</h1><span id=\"state\" class=\"state-",
      state, "\">", state, "</span><span id=\"state-reason\">", EscapeHtml(why),
      "</span><span id=\"updated\">as rendered by the server; it updates itself with "
      "JavaScript</span></header>\n<main>");
  AppendSummary(status, out);
  out += "\n<section><h2>Tasks ended per second, last 5 minutes</h2><div id=\"chart\"></div>";
  AppendChartNote(status, out);
  out += "</section>\n<section><h2>Workers</h2>";
  AppendWorkers(status, out);
  out += "</section>\n<section><h2>Sessions</h2>";
  AppendSessions(status, out);
  out += "</section>\n<section><h2>Queue wait and run time by function</h2>";
  AppendFunctions(status, out);
  out += "</section>\n<section><h2>Recent failures</h2>";
  AppendFailures(status, out);
  out += "</section></main>\n<script src=\"/live.js\"></script></body></html>\n";
  return out;
}

absl::flat_hash_map<std::string, HttpResource> LivePageResources(
    std::function<v1::PoolStatus()> status) {
  absl::flat_hash_map<std::string, HttpResource> resources;
  resources["/"] = {.content_type = "text/html; charset=utf-8",
                    .body = [status] { return RenderLivePage(status()); },
                    .headers = kPageHeaders};
  resources["/api/status"] = {.content_type = "application/json",
                              .body = [status] { return StatusBody(status()); }};
  resources["/live.js"] = {.content_type = "text/javascript; charset=utf-8",
                           .body = [] { return std::string(live_page_assets::kLiveScript); },
                           .public_asset = true};
  resources["/live.css"] = {.content_type = "text/css; charset=utf-8",
                            .body = [] { return std::string(live_page_assets::kLiveStyle); },
                            .public_asset = true};
  return resources;
}

}  // namespace mpigate::server
