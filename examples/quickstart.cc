// quickstart: submits a batch of tasks to a running mpigate service and prints results and
// timing. Finds the service through $MPIGATE_ENDPOINT or the endpoint file (see README.md).
//
//   bazel run //examples:quickstart -- [--tasks N]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"

namespace {

double Millis(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

int Run(int tasks) {
  mpigate::ExecutorOptions options;
  options.client_name = "quickstart";
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> connected =
      mpigate::Executor::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "quickstart: %s\n", connected.status().ToString().c_str());
    return 1;
  }
  mpigate::Executor& executor = **connected;
  std::printf("connected: a pool of %d workers\n", executor.workers());

  // 1. A batch of echo tasks: submit them all, then collect the results in order.
  absl::Time start = absl::Now();
  std::vector<mpigate::Future> futures;
  futures.reserve(static_cast<size_t>(tasks));
  for (int i = 0; i < tasks; ++i)
    futures.push_back(executor.Submit("echo", absl::StrCat("item-", i)));
  const absl::Duration submitted = absl::Now() - start;
  int correct = 0;
  for (int i = 0; i < tasks; ++i) {
    absl::StatusOr<std::string> result = futures[static_cast<size_t>(i)].Result();
    if (result.ok() && *result == absl::StrCat("item-", i)) ++correct;
  }
  const absl::Duration finished = absl::Now() - start;
  std::printf(
      "echo batch: %d of %d results correct; submitted in %.1f ms, all done in %.1f ms "
      "(%.0f tasks/s)\n",
      correct, tasks, Millis(submitted), Millis(finished), tasks / absl::ToDoubleSeconds(finished));

  // 2. Work spread over the pool: one 200 ms spin per worker, in parallel.
  start = absl::Now();
  std::vector<mpigate::Future> spins;
  for (int w = 0; w < executor.workers(); ++w) spins.push_back(executor.Submit("spin", "200"));
  for (mpigate::Future& spin : spins) spin.Result().IgnoreError();
  std::printf("%d x spin(200 ms) in parallel: %.1f ms\n", executor.workers(),
              Millis(absl::Now() - start));

  // 3. Round-trip latency: submit one task, wait, repeat.
  std::vector<double> latencies;
  for (int i = 0; i < 200; ++i) {
    const absl::Time t0 = absl::Now();
    executor.Submit("echo", "ping").Result().IgnoreError();
    latencies.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
  }
  std::sort(latencies.begin(), latencies.end());
  std::printf("sequential submit-and-wait: p50 %.0f us, p99 %.0f us\n", latencies[100],
              latencies[197]);

  // 4. Errors come back as values, with the worker's code and message.
  absl::StatusOr<std::string> failed = executor.Submit("fail", "something went wrong").Result();
  std::printf("a failing task: %s\n", failed.status().ToString().c_str());
  absl::StatusOr<std::string> unknown = executor.Submit("no_such_function", "").Result();
  std::printf("an unknown function: %s\n", unknown.status().ToString().c_str());

  executor.Shutdown(/*wait=*/true);
  return correct == tasks ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int tasks = 10000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--tasks") == 0) tasks = std::max(1, std::atoi(argv[i + 1]));
  }
  return Run(tasks);
}
