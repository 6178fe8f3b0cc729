// openmp_client: the threads of an OpenMP program share one mpigate Executor. Every thread submits
// from a `#pragma omp parallel for` and runs a Map() of its own; the program checks every result
// and prints a summary. Exits 0 only if every result is correct.
//
//   OMP_NUM_THREADS=4 bazel-bin/examples/openmp/openmp_client [--endpoint TARGET] [--tasks N]
//
// Without --endpoint it finds the service through $MPIGATE_ENDPOINT or the endpoint file.
#include <omp.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/executor.h"

namespace {

// Inputs per thread for the Map() each thread runs, and its chunk size (not a divisor on purpose:
// the last chunk is short).
constexpr int kMapInputsPerThread = 100;
constexpr int kMapChunksize = 8;

struct Flags {
  std::string endpoint;
  int tasks = 2000;
};

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string value;
    std::string name = arg;
    if (const size_t equals = arg.find('='); equals != std::string::npos) {
      name = arg.substr(0, equals);
      value = arg.substr(equals + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    }
    if (name == "--endpoint") {
      flags.endpoint = value;
    } else if (name == "--tasks") {
      if (!absl::SimpleAtoi(value, &flags.tasks) || flags.tasks < 1) return false;
    } else {
      return false;
    }
  }
  return true;
}

int Run(const Flags& flags) {
  mpigate::ExecutorOptions options;
  options.endpoint = flags.endpoint;
  options.client_name = "openmp_client";
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> connected =
      mpigate::Executor::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "openmp_client: %s\n", connected.status().ToString().c_str());
    return 1;
  }
  mpigate::Executor& executor = **connected;
  const int threads = omp_get_max_threads();

  // 1. Every thread submits its share of one loop through the shared executor.
  std::vector<std::optional<mpigate::Future>> futures(static_cast<size_t>(flags.tasks));
  std::vector<int> submitted_by(static_cast<size_t>(threads), 0);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < flags.tasks; ++i) {
    futures[static_cast<size_t>(i)] = executor.Submit("echo", absl::StrCat("task-", i));
    ++submitted_by[static_cast<size_t>(omp_get_thread_num())];
  }

  // 2. Every thread maps over inputs of its own, in chunks, while the others do the same.
  int map_correct = 0;
#pragma omp parallel reduction(+ : map_correct)
  {
    const int thread = omp_get_thread_num();
    std::vector<std::string> inputs;
    for (int i = 0; i < kMapInputsPerThread; ++i) inputs.push_back(absl::StrCat(thread, "/", i));
    int index = 0;
    for (absl::StatusOr<std::string> result :
         executor.Map("echo", inputs, {.chunksize = kMapChunksize})) {
      if (result.ok() && *result == absl::StrCat(thread, "/", index)) ++map_correct;
      ++index;
    }
  }

  // 3. Collect the loop's results, again from every thread.
  int task_correct = 0;
#pragma omp parallel for reduction(+ : task_correct)
  for (int i = 0; i < flags.tasks; ++i) {
    absl::StatusOr<std::string> result = futures[static_cast<size_t>(i)]->Result();
    if (result.ok() && *result == absl::StrCat("task-", i)) ++task_correct;
  }
  executor.Shutdown(/*wait=*/true);

  const int expected = flags.tasks + threads * kMapInputsPerThread;
  const int correct = task_correct + map_correct;
  std::printf(
      "openmp_client: %d threads submitted %d tasks (per thread: %s) and ran %d maps of %d "
      "inputs; %d of %d results correct\n",
      threads, flags.tasks, absl::StrJoin(submitted_by, " ").c_str(), threads, kMapInputsPerThread,
      correct, expected);
  return correct == expected ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    std::fprintf(stderr, "usage: openmp_client [--endpoint TARGET] [--tasks N]\n");
    return 2;
  }
  return Run(flags);
}
