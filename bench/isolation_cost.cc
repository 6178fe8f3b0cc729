// isolation_cost: what one pool costs per task, for bench/isolation.sh to compare
// --isolation=process with --isolation=none. Against the pool at --endpoint it measures
//   - sequential submit-and-wait of a small echo: p50 and p99 round trip,
//   - a map of --map_items small echoes in chunks of --chunk: items per second,
//   - an echo of --big_mb MiB: the median round trip of --big_reps,
// and prints them as one line: `<label> <p50 us> <p99 us> <map items/s> <big ms>`.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"

ABSL_FLAG(std::string, endpoint, "", "The pool's gRPC target, e.g. unix:/tmp/x/s.sock.");
ABSL_FLAG(std::string, label, "pool", "The first word of the output line.");
ABSL_FLAG(int, sequential, 2000, "Sequential round trips to time (after 200 to warm up).");
ABSL_FLAG(int, map_items, 200000, "Items of the map.");
ABSL_FLAG(int, chunk, 1000, "Items per task of the map.");
ABSL_FLAG(int, big_mb, 64, "Size of the large echo, MiB.");
ABSL_FLAG(int, big_reps, 5, "Large echoes to time.");

namespace {

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "isolation_cost: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> connected = mpigate::Executor::Connect(
      {.endpoint = absl::GetFlag(FLAGS_endpoint), .client_name = "isolation_cost"});
  if (!connected.ok()) return Fail(connected.status());
  mpigate::Executor& executor = **connected;

  std::vector<double> round_trips_us;
  const int sequential = absl::GetFlag(FLAGS_sequential);
  for (int i = -200; i < sequential; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> result = executor.Submit("echo", "ping").Result();
    if (!result.ok()) return Fail(result.status());
    if (i >= 0) round_trips_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
  }

  std::vector<std::string> items(static_cast<size_t>(absl::GetFlag(FLAGS_map_items)));
  for (size_t i = 0; i < items.size(); ++i) items[i] = absl::StrCat(i);
  const absl::Time map_start = absl::Now();
  size_t mapped = 0;
  for (absl::StatusOr<std::string>& result :
       executor.Map("echo", std::move(items), {.chunksize = absl::GetFlag(FLAGS_chunk)})) {
    if (!result.ok()) return Fail(result.status());
    ++mapped;
  }
  const double items_per_s =
      static_cast<double>(mapped) / absl::ToDoubleSeconds(absl::Now() - map_start);

  const std::string big(static_cast<size_t>(absl::GetFlag(FLAGS_big_mb)) << 20, 'b');
  std::vector<double> big_ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_big_reps); ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> result = executor.Submit("echo", big).Result();
    if (!result.ok()) return Fail(result.status());
    if (result->size() != big.size())
      return Fail(absl::DataLossError("large echo came back short"));
    big_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }

  std::printf("%s %.0f %.0f %.0f %.1f\n", absl::GetFlag(FLAGS_label).c_str(),
              Percentile(round_trips_us, 0.5), Percentile(round_trips_us, 0.99), items_per_s,
              Percentile(big_ms, 0.5));
  return 0;
}
