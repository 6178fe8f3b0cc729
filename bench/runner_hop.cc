// runner_hop: the cost of the hop that crash isolation adds to every task, alone: a worker's
// RunnerProcess handing echo tasks to a real mpigate-runner, with no MPI and no gRPC around it.
// Prints the p50 and p99 round trip of --small small echoes and the median of --big_reps echoes
// of --big_mb MiB, on one line: `hop <p50 us> <p99 us> <big ms>`.
//
// A floor of bench/compare.py's table (the default isolation's hop of every task):
//   runner_hop --csv --runner=bazel-bin/worker/mpigate-runner
// prints compare.py's lines `floor_runner,p50,VALUE,us` and `floor_runner,p99,VALUE,us` of the
// small echoes instead, and times no large echo.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "wire/frames.pb.h"
#include "worker/runner_process.h"
#include "worker/worker_options.h"

ABSL_FLAG(std::string, runner, "bazel-bin/worker/mpigate-runner", "The mpigate-runner binary.");
ABSL_FLAG(int, small, 5000, "Small echoes to time (after 500 to warm up).");
ABSL_FLAG(int, big_mb, 64, "Size of the large echo, MiB.");
ABSL_FLAG(int, big_reps, 5, "Large echoes to time.");
ABSL_FLAG(bool, csv, false,
          "Print the small echoes' p50 and p99 as bench/compare.py's lines "
          "(floor_runner,p50,VALUE,us), and time no large echo.");

namespace {

using mpigate::worker::RunnerEvent;

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

// One echo through the runner; false if it did not come back whole.
bool Echo(mpigate::worker::RunnerProcess& runner, const std::string& task, size_t size) {
  runner.SendTask(task);
  RunnerEvent event = runner.Await(absl::InfiniteDuration());
  mpigate::wire::ResultFrame result;
  return event.kind == RunnerEvent::Kind::kResult && result.ParseFromString(event.result) &&
         result.result().size() == size;
}

std::string EchoTask(const std::string& payload) {
  mpigate::wire::TaskFrame task;
  task.set_task_key(1);
  task.set_function("echo");
  task.set_payload(payload);
  return task.SerializeAsString();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  mpigate::worker::RunnerConfig config;
  config.worker_pid = static_cast<int>(getpid());
  absl::StatusOr<std::unique_ptr<mpigate::worker::RunnerProcess>> runner =
      mpigate::worker::RunnerProcess::Spawn(
          {absl::GetFlag(FLAGS_runner), mpigate::worker::ToRunnerArgs(config)});
  if (!runner.ok() || !(*runner)->AwaitHello(absl::InfiniteDuration()).ok()) {
    std::fprintf(stderr, "runner_hop: the runner did not start\n");
    return 1;
  }
  const std::string small = EchoTask("ping");
  std::vector<double> small_us;
  for (int i = -500; i < absl::GetFlag(FLAGS_small); ++i) {
    const absl::Time start = absl::Now();
    if (!Echo(**runner, small, 4)) return 1;
    if (i >= 0) small_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
  }
  if (absl::GetFlag(FLAGS_csv)) {
    std::printf("floor_runner,p50,%.1f,us\nfloor_runner,p99,%.1f,us\n", Percentile(small_us, 0.5),
                Percentile(small_us, 0.99));
    return 0;
  }
  const size_t big_size = static_cast<size_t>(absl::GetFlag(FLAGS_big_mb)) << 20;
  const std::string big = EchoTask(std::string(big_size, 'b'));
  std::vector<double> big_ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_big_reps); ++i) {
    const absl::Time start = absl::Now();
    if (!Echo(**runner, big, big_size)) return 1;
    big_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  std::printf("hop %.0f %.0f %.1f\n", Percentile(small_us, 0.5), Percentile(small_us, 0.99),
              Percentile(big_ms, 0.5));
  return 0;
}
