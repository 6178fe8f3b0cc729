// Figures the live page (server/live_page), `mpigate top` (cli/top_view.h) and `mpigate status`
// derive from a PoolStatus, so that they say the same: quantiles of the time histograms, durations
// as people read them, workers and sessions busiest first, and the status as JSON. (The page's
// script, server/live_page/live.js, does the same in the browser.)
//
// Thread-safety: pure functions.
#ifndef MPIGATE_COMMON_POOL_FIGURES_H_
#define MPIGATE_COMMON_POOL_FIGURES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/repeated_field.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate {

// The `q`-th quantile (0 < q <= 1) of a histogram of FunctionTimes' form: the upper bound of the
// bucket that holds it, in microseconds, or for the last bucket (above every bound) the largest
// bound. nullopt for an empty histogram.
std::optional<uint64_t> QuantileMicros(const google::protobuf::RepeatedField<uint64_t>& counts,
                                       const google::protobuf::RepeatedField<uint64_t>& bounds,
                                       double q);

// "850 µs", "12.5 ms", "3.20 s", "2m05s", "1h02m".
std::string FormatMicros(uint64_t micros);

// A rate: one decimal below 10 ("2.5"), none from there on ("128").
std::string FormatRate(double per_second);

// "-" for no quantile, "≤2.50 ms" (a bucket's upper bound), ">100.00 s" past the largest bound.
std::string FormatQuantile(std::optional<uint64_t> micros, uint64_t largest_bound);

// Workers busy first, the one running its task longest first, then idle ones, then those out of
// service, each by index.
std::vector<const v1::WorkerStatus*> WorkersBusiestFirst(const v1::PoolStatus& status);

// Sessions with the most tasks running first, then the most queued, the fastest, the oldest.
std::vector<const v1::SessionStatus*> SessionsBusiestFirst(const v1::PoolStatus& status);

// How PoolStatusJson lays its text out: compact for the page's script, indented and ending with
// a newline for a person or a shell pipeline (`mpigate status --json`).
enum class JsonLayout { kCompact, kIndented };

// `status` as JSON: proto field names, every field (zeros too, so that a reader need not know
// proto3's defaults); 64-bit integers are strings, as Protobuf's JSON mapping has them. INTERNAL
// if it cannot be printed.
absl::StatusOr<std::string> PoolStatusJson(const v1::PoolStatus& status, JsonLayout layout);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_POOL_FIGURES_H_
