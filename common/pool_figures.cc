#include "common/pool_figures.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"

namespace mpigate {

std::optional<uint64_t> QuantileMicros(const google::protobuf::RepeatedField<uint64_t>& counts,
                                       const google::protobuf::RepeatedField<uint64_t>& bounds,
                                       double q) {
  uint64_t total = 0;
  for (const uint64_t count : counts) total += count;
  if (total == 0 || bounds.empty()) return std::nullopt;
  // The rank of the observation wanted, 1-based.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total))));
  uint64_t seen = 0;
  for (int i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank) return bounds[std::min(i, bounds.size() - 1)];
  }
  return bounds[bounds.size() - 1];
}

std::string FormatRate(double per_second) {
  if (per_second < 10) return absl::StrFormat("%.1f", per_second);
  return absl::StrFormat("%.0f", per_second);
}

std::string FormatMicros(uint64_t micros) {
  if (micros < 1'000) return absl::StrFormat("%d µs", micros);
  if (micros < 10'000) return absl::StrFormat("%.2f ms", micros / 1e3);
  if (micros < 1'000'000) return absl::StrFormat("%.1f ms", micros / 1e3);
  if (micros < 60'000'000) return absl::StrFormat("%.2f s", micros / 1e6);
  const uint64_t seconds = micros / 1'000'000;
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  return absl::StrFormat("%dh%02dm", seconds / 3600, seconds / 60 % 60);
}

std::string FormatQuantile(std::optional<uint64_t> micros, uint64_t largest_bound) {
  if (!micros.has_value()) return "-";
  // The last bucket is open: its observations lie above the largest bound.
  if (*micros >= largest_bound) return ">" + FormatMicros(largest_bound);
  // A bucket's upper bound: the quantile is at most that.
  return "≤" + FormatMicros(*micros);
}

std::vector<const v1::WorkerStatus*> WorkersBusiestFirst(const v1::PoolStatus& status) {
  std::vector<const v1::WorkerStatus*> workers;
  for (const v1::WorkerStatus& worker : status.worker_list()) workers.push_back(&worker);
  const auto rank = [](const v1::WorkerStatus* worker) {
    const int group = worker->busy() ? 0 : (worker->down() ? 2 : 1);
    return std::make_tuple(group, worker->busy() ? -static_cast<int64_t>(worker->running_ms()) : 0,
                           worker->worker());
  };
  std::stable_sort(workers.begin(), workers.end(),
                   [&](const auto* a, const auto* b) { return rank(a) < rank(b); });
  return workers;
}

std::vector<const v1::SessionStatus*> SessionsBusiestFirst(const v1::PoolStatus& status) {
  std::vector<const v1::SessionStatus*> sessions;
  for (const v1::SessionStatus& session : status.session_list()) sessions.push_back(&session);
  const auto rank = [](const v1::SessionStatus* session) {
    return std::make_tuple(-static_cast<double>(session->running_tasks()),
                           -static_cast<double>(session->queued_tasks()),
                           -session->recent_tasks_per_second(), session->session_id());
  };
  std::stable_sort(sessions.begin(), sessions.end(),
                   [&](const auto* a, const auto* b) { return rank(a) < rank(b); });
  return sessions;
}

absl::StatusOr<std::string> PoolStatusJson(const v1::PoolStatus& status, JsonLayout layout) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = layout == JsonLayout::kIndented;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (const auto printed = google::protobuf::util::MessageToJsonString(status, &json, options);
      !printed.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot print the status as JSON: ", printed.ToString()));
  }
  if (layout == JsonLayout::kIndented && (json.empty() || json.back() != '\n')) {
    json.push_back('\n');
  }
  return json;
}

}  // namespace mpigate
