#include "server/task_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mpigate::server {
namespace {

// A label value as the text format wants it: backslash, double quote and newline escaped.
std::string EscapeLabel(absl::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        escaped += "\\\\";
        break;
      case '"':
        escaped += "\\\"";
        break;
      case '\n':
        escaped += "\\n";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

void AppendHeader(absl::string_view name, absl::string_view type, absl::string_view help,
                  std::string& out) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

std::string Seconds(uint64_t micros) { return absl::StrFormat("%g", micros / 1e6); }

}  // namespace

void DurationHistogram::Observe(uint64_t micros) {
  const auto bound = std::lower_bound(kBoundsMicros.begin(), kBoundsMicros.end(), micros);
  ++counts_[static_cast<size_t>(bound - kBoundsMicros.begin())];
  ++count_;
  sum_micros_ += micros;
}

void DurationHistogram::AppendPrometheusText(absl::string_view name, absl::string_view labels,
                                             std::string& out) const {
  const std::string prefix = labels.empty() ? "" : absl::StrCat(labels, ",");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBoundsMicros.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(&out, name, "_bucket{", prefix, "le=\"", Seconds(kBoundsMicros[i]), "\"} ",
                    cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_bucket{", prefix, "le=\"+Inf\"} ", count_, "\n");
  absl::StrAppend(&out, name, "_sum{", labels, "} ", Seconds(sum_micros_), "\n");
  absl::StrAppend(&out, name, "_count{", labels, "} ", count_, "\n");
}

TaskMetrics::TaskMetrics(absl::Time started, size_t max_functions)
    : started_(started),
      max_functions_(max_functions),
      other_(functions_.emplace(kOther, std::make_unique<Function>(Function{kOther}))
                 .first->second.get()) {}

TaskMetrics::Function& TaskMetrics::AddFunction(absl::string_view name) {
  if (const auto it = functions_.find(name); it != functions_.end()) return *it->second;
  // functions_ holds other's besides the labelled ones.
  if (functions_.size() > max_functions_) return *other_;
  return *functions_
              .emplace(std::string(name), std::make_unique<Function>(Function{std::string(name)}))
              .first->second;
}

void TaskMetrics::Accepted(Function& function, uint64_t payload_bytes) {
  ++function.accepted;
  function.payload_bytes += payload_bytes;
}

void TaskMetrics::Rejected(absl::StatusCode code) { ++rejected_[code]; }

void TaskMetrics::Ended(Function& function, const v1::TaskOutcome& outcome, absl::Time now) {
  switch (outcome.state()) {
    case v1::TASK_STATE_SUCCEEDED:
      ++function.succeeded;
      break;
    case v1::TASK_STATE_CANCELLED:
      ++function.cancelled;
      break;
    default:
      ++function.failed;
      break;
  }
  function.result_bytes += ResultBytes(outcome);
  // A task that never started has no queue wait to speak of (it left the queue unrun) and no
  // run time.
  if (outcome.attempts() > 0) {
    function.queue_wait.Observe(outcome.queue_us());
    function.run_time.Observe(outcome.run_us());
  }
  rate_.Add(absl::ToUnixSeconds(now));
}

TaskMetrics::Totals TaskMetrics::EndedTotals() const {
  Totals totals;
  for (const auto& [name, function] : functions_) {
    totals.succeeded += function->succeeded;
    totals.failed += function->failed;
    totals.cancelled += function->cancelled;
  }
  return totals;
}

double TaskMetrics::RecentTasksPerSecond(absl::Time now) const {
  return rate_.PerSecond(now, started_, kRateWindowSeconds);
}

TaskMetrics::Snapshot TaskMetrics::TakeSnapshot() const {
  Snapshot snapshot;
  snapshot.functions.reserve(functions_.size());
  for (const auto& [name, function] : functions_) snapshot.functions.emplace_back(name, *function);
  snapshot.rejected.assign(rejected_.begin(), rejected_.end());
  return snapshot;
}

void TaskMetrics::Snapshot::AppendPrometheusText(std::string& out) const {
  const auto by_function = [this, &out](absl::string_view name, absl::string_view type,
                                        absl::string_view help, auto value) {
    AppendHeader(name, type, help, out);
    for (const auto& [function, figures] : functions) {
      absl::StrAppend(&out, name, "{function=\"", EscapeLabel(function), "\"} ", value(figures),
                      "\n");
    }
  };
  by_function("mpigate_tasks_accepted_total", "counter", "Tasks accepted, by function.",
              [](const Function& f) { return f.accepted; });

  AppendHeader("mpigate_tasks_ended_total", "counter", "Tasks ended, by function and end state.",
               out);
  for (const auto& [function, figures] : functions) {
    const std::string label = EscapeLabel(function);
    for (const auto& [state, count] :
         {std::pair<const char*, uint64_t>{"succeeded", figures.succeeded},
          {"failed", figures.failed},
          {"cancelled", figures.cancelled}}) {
      absl::StrAppend(&out, "mpigate_tasks_ended_total{function=\"", label, "\",state=\"", state,
                      "\"} ", count, "\n");
    }
  }

  AppendHeader("mpigate_tasks_rejected_total", "counter",
               "Tasks refused at submit, by status code.", out);
  for (const auto& [code, count] : rejected) {
    absl::StrAppend(&out, "mpigate_tasks_rejected_total{code=\"", absl::StatusCodeToString(code),
                    "\"} ", count, "\n");
  }

  by_function("mpigate_task_payload_bytes_total", "counter",
              "Bytes of task input accepted (payloads, items, shared memory), by function.",
              [](const Function& f) { return f.payload_bytes; });
  by_function("mpigate_task_result_bytes_total", "counter",
              "Bytes of task results returned (results, items, shared memory), by function.",
              [](const Function& f) { return f.result_bytes; });

  const auto histogram_by_function = [this, &out](absl::string_view name, absl::string_view help,
                                                  DurationHistogram Function::*histogram) {
    AppendHeader(name, "histogram", help, out);
    for (const auto& [function, figures] : functions) {
      (figures.*histogram)
          .AppendPrometheusText(name, absl::StrCat("function=\"", EscapeLabel(function), "\""),
                                out);
    }
  };
  histogram_by_function("mpigate_task_queue_wait_seconds",
                        "Time tasks that ran waited in the gateway's queue, by function.",
                        &Function::queue_wait);
  histogram_by_function("mpigate_task_run_seconds",
                        "Time tasks ran on their worker (all items of a chunk), by function.",
                        &Function::run_time);
}

uint64_t PayloadBytes(const v1::TaskSpec& spec) {
  uint64_t bytes = spec.payload().size() + spec.shared_payload().size();
  for (const std::string& item : spec.items()) bytes += item.size();
  return bytes;
}

uint64_t ResultBytes(const v1::TaskOutcome& outcome) {
  uint64_t bytes = outcome.result().size() + outcome.shared_result().size();
  for (const v1::ItemOutcome& item : outcome.items()) bytes += item.result().size();
  return bytes;
}

}  // namespace mpigate::server
