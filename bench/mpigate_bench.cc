// mpigate_bench: the mpigate side of bench/compare.py. Runs one workload against the pool at
// --endpoint through the C++ client, the same workloads bench/peers/workloads.py runs on
// mpi4py.futures and Dask, and prints the same lines on stdout: `workload,metric,value,unit`, or
// `workload,metric,error,message` for a part that failed. A line `gate,NAME` means it waits for
// one line on stdin before going on, while compare.py measures or lines up other clients.
//
//   mpigate_bench --endpoint=unix:/tmp/x/s.sock --workload=latency --samples=2000
//
// The task is the built-in echo, with an empty payload where it stands for a no-op.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"

ABSL_FLAG(std::string, endpoint, "", "The pool's gRPC target, e.g. unix:/tmp/x/s.sock.");
ABSL_FLAG(std::string, workload, "",
          "start, throughput, latency, payload, idle, clients or burst (see Workloads()).");
ABSL_FLAG(int, tasks, 100000, "Tasks of a throughput, clients or burst run.");
ABSL_FLAG(std::string, rank_variable, "OMPI_COMM_WORLD_RANK",
          "The environment variable in which the MPI library gives each worker its rank (a burst "
          "run counts the workers by it): OMPI_COMM_WORLD_RANK for Open MPI, PMI_RANK for MPICH.");
ABSL_FLAG(int, chunksize, 64, "Items per chunk of the throughput map.");
ABSL_FLAG(int, samples, 2000, "Sequential round trips of the latency run.");
ABSL_FLAG(int, idle_spells, 1,
          "Idle spells of the idle run, each followed by one round trip: its first_task is their "
          "median.");
ABSL_FLAG(std::string, payloads, "1024:200,1048576:50,67108864:3,268435456:3",
          "SIZE:REPS,... echoes of SIZE bytes to time, REPS times each after one to warm up.");
ABSL_FLAG(int, threads, 4, "Submitting threads of a clients run.");
ABSL_FLAG(uint32_t, max_running_tasks, 0,
          "The session's cap on its tasks on workers at once (ExecutorOptions); 0: none. What a "
          "cap costs the scheduler.");
ABSL_FLAG(double, launched_at, 0,
          "For start: when the pool was launched, in Unix seconds; the run reports the time from "
          "then to the first task's result.");

namespace {

using mpigate::Executor;
using mpigate::Future;

// One result line. `value` is anything absl::StrCat() takes: a number, or "error".
template <typename Value>
void Emit(absl::string_view workload, absl::string_view metric, const Value& value,
          absl::string_view unit) {
  std::cout << workload << ',' << metric << ',' << absl::StrCat(value) << ',' << unit << std::endl;
}

// An error as the last field of a line: one line, no commas.
std::string OneLine(const absl::Status& status) {
  return absl::StrReplaceAll(status.ToString(), {{"\n", " "}, {",", ";"}});
}

// Tells compare.py that we reached `name`, and waits until it lets us go on.
absl::Status WaitAtGate(absl::string_view name) {
  std::cout << "gate," << name << std::endl;
  std::string line;
  if (!std::getline(std::cin, line)) {
    return absl::AbortedError(absl::StrCat("stdin closed at gate ", name));
  }
  return absl::OkStatus();
}

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

double UnixSeconds(absl::Time time) { return absl::ToDoubleSeconds(time - absl::UnixEpoch()); }

// Waits for every future; the first error, if any.
absl::Status AwaitAll(const std::vector<Future>& futures) {
  for (const Future& future : futures) {
    if (absl::Status status = future.Exception(); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::vector<Future> SubmitEmptyEchoes(Executor& executor, int count) {
  std::vector<Future> futures;
  futures.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) futures.push_back(executor.Submit("echo", ""));
  return futures;
}

// `count` sequential submit-and-wait of an empty echo, each in microseconds.
absl::StatusOr<std::vector<double>> RoundTripsUs(Executor& executor, int count) {
  std::vector<double> round_trips_us;
  for (int i = 0; i < count; ++i) {
    const absl::Time start = absl::Now();
    if (absl::Status status = executor.Submit("echo", "").Exception(); !status.ok()) return status;
    round_trips_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
  }
  return round_trips_us;
}

// (f) The time from the pool's launch (--launched_at) to the first task's result.
absl::Status Start(Executor& executor) {
  if (absl::GetFlag(FLAGS_launched_at) <= 0) {
    return absl::InvalidArgumentError("--workload=start needs --launched_at");
  }
  if (absl::Status status = executor.Submit("echo", "").Exception(); !status.ok()) return status;
  Emit("start", "first_task", UnixSeconds(absl::Now()) - absl::GetFlag(FLAGS_launched_at), "s");
  return absl::OkStatus();
}

// (a) --tasks empty echoes as one future each (a submit loop, then a wait for all), then as one
// map in chunks of --chunksize.
absl::Status Throughput(Executor& executor) {
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const absl::Time futures_start = absl::Now();
  if (absl::Status status = AwaitAll(SubmitEmptyEchoes(executor, tasks)); !status.ok()) {
    return status;
  }
  Emit("throughput", "futures", tasks / absl::ToDoubleSeconds(absl::Now() - futures_start),
       "tasks/s");

  const int chunksize = absl::GetFlag(FLAGS_chunksize);
  const absl::Time map_start = absl::Now();
  int mapped = 0;
  for (const absl::StatusOr<std::string>& result :
       executor.Map("echo", std::vector<std::string>(static_cast<size_t>(tasks)),
                    {.chunksize = chunksize})) {
    if (!result.ok()) return result.status();
    ++mapped;
  }
  if (mapped != tasks) {
    return absl::DataLossError(absl::StrCat("map gave ", mapped, " results for ", tasks));
  }
  Emit("throughput", absl::StrCat("map", chunksize),
       tasks / absl::ToDoubleSeconds(absl::Now() - map_start), "tasks/s");
  return absl::OkStatus();
}

// (b) --samples sequential round trips, after a tenth as many to warm up.
absl::Status Latency(Executor& executor) {
  const int samples = absl::GetFlag(FLAGS_samples);
  if (absl::Status status = RoundTripsUs(executor, std::max(20, samples / 10)).status();
      !status.ok()) {
    return status;
  }
  absl::StatusOr<std::vector<double>> round_trips_us = RoundTripsUs(executor, samples);
  if (!round_trips_us.ok()) return round_trips_us.status();
  Emit("latency", "p50", Percentile(*round_trips_us, 0.5), "us");
  Emit("latency", "p99", Percentile(*round_trips_us, 0.99), "us");
  return absl::OkStatus();
}

// One size of the payload run: the median of `reps` echoes of `size` bytes, after one to warm up,
// as GB/s counting the bytes both ways.
absl::StatusOr<double> EchoGigabytesPerSecond(Executor& executor, size_t size, int reps) {
  const std::string data(size, 'p');
  std::vector<double> seconds;
  for (int rep = 0; rep <= reps; ++rep) {
    std::string payload = data;  // Copied before the clock starts: Submit takes it by value.
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> result = executor.Submit("echo", std::move(payload)).Result();
    const absl::Duration elapsed = absl::Now() - start;
    if (!result.ok()) return result.status();
    if (result->size() != size) {
      return absl::DataLossError(
          absl::StrCat("echo of ", size, " bytes came back with ", result->size()));
    }
    if (rep > 0) seconds.push_back(absl::ToDoubleSeconds(elapsed));
  }
  return 2.0 * static_cast<double>(size) / Percentile(seconds, 0.5) / 1e9;
}

// (c) For each SIZE:REPS of --payloads, EchoGigabytesPerSecond(); a size that fails is reported
// as an error line and the next one is tried.
absl::Status Payload(Executor& executor) {
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_payloads), ',')) {
    std::pair<std::string, std::string> size_and_reps = absl::StrSplit(item, ':');
    size_t size = 0;
    int reps = 0;
    if (!absl::SimpleAtoi(size_and_reps.first, &size) ||
        !absl::SimpleAtoi(size_and_reps.second, &reps) || reps < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--payloads: '", item, "' is not SIZE:REPS"));
    }
    absl::StatusOr<double> rate = EchoGigabytesPerSecond(executor, size, reps);
    if (rate.ok()) {
      Emit("payload", size_and_reps.first, *rate, "GB/s");
    } else {
      Emit("payload", size_and_reps.first, "error", OneLine(rate.status()));
    }
  }
  return absl::OkStatus();
}

// (e) The hot p50, then the round trip of the first task after each of --idle_spells idle spells,
// and their median: one sample is at the mercy of whatever else the machine ran at that
// millisecond (on the development VM, a kernel thread's bursts of up to 5 ms). The first spell
// is gate `idle`, during which compare.py measures the idle service's CPU; the others are gate
// `idle_again`.
absl::Status Idle(Executor& executor) {
  absl::StatusOr<std::vector<double>> hot_us = RoundTripsUs(executor, 200);
  if (!hot_us.ok()) return hot_us.status();
  Emit("idle", "hot_p50", Percentile(*hot_us, 0.5), "us");
  const int spells = std::max(absl::GetFlag(FLAGS_idle_spells), 1);
  std::vector<double> first_us;
  for (int spell = 0; spell < spells; ++spell) {
    if (absl::Status status = WaitAtGate(spell == 0 ? "idle" : "idle_again"); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::vector<double>> first = RoundTripsUs(executor, 1);
    if (!first.ok()) return first.status();
    first_us.push_back(first->front());
  }
  std::cerr << "idle: the first task after each idle spell: " << absl::StrJoin(first_us, " ")
            << " us" << std::endl;
  Emit("idle", "first_task", Percentile(first_us, 0.5), "us");
  return absl::OkStatus();
}

// (d) One of many client processes: after the gate (which compare.py opens for all at once),
// --threads threads share this process's executor and submit --tasks empty echoes between them,
// one future each, and wait for them. Reports the tasks and the wall-clock time they were done.
absl::Status Clients(Executor& executor) {
  const int threads = absl::GetFlag(FLAGS_threads);
  const int per_thread = absl::GetFlag(FLAGS_tasks) / threads;
  absl::Mutex mu;
  absl::Status first_error;  // Guarded by mu while the submitters run.
  if (absl::Status status = WaitAtGate("clients"); !status.ok()) return status;
  std::vector<std::thread> submitters;
  for (int i = 0; i < threads; ++i) {
    submitters.emplace_back([&] {
      absl::Status status = AwaitAll(SubmitEmptyEchoes(executor, per_thread));
      absl::MutexLock lock(&mu);
      first_error.Update(status);
    });
  }
  for (std::thread& submitter : submitters) submitter.join();
  const double done_at = UnixSeconds(absl::Now());
  if (!first_error.ok()) return first_error;
  Emit("clients", "tasks", per_thread * threads, "tasks");
  Emit("clients", "done_at", absl::StrFormat("%.6f", done_at), "unix s");
  return absl::OkStatus();
}

// (g) A burst of --tasks tasks that each return the rank of the worker that ran it: how long the
// burst took and how many workers ran some of it.
absl::Status Burst(Executor& executor) {
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const absl::Time start = absl::Now();
  std::vector<Future> futures;
  futures.reserve(static_cast<size_t>(tasks));
  // The task runners inherit the variable from their workers.
  const std::string rank_variable = absl::GetFlag(FLAGS_rank_variable);
  for (int i = 0; i < tasks; ++i) futures.push_back(executor.Submit("getenv", rank_variable));
  absl::flat_hash_set<std::string> ranks;
  for (const Future& future : futures) {
    absl::StatusOr<std::string> rank = future.Result();
    if (!rank.ok()) return rank.status();
    ranks.insert(*std::move(rank));
  }
  Emit("scale", "burst", absl::ToDoubleSeconds(absl::Now() - start), "s");
  Emit("scale", "workers_used", ranks.size(), "workers");
  return absl::OkStatus();
}

using Workload = absl::Status (*)(Executor&);

absl::StatusOr<Workload> WorkloadNamed(absl::string_view name) {
  static constexpr std::pair<absl::string_view, Workload> kWorkloads[] = {
      {"start", Start}, {"throughput", Throughput}, {"latency", Latency}, {"payload", Payload},
      {"idle", Idle},   {"clients", Clients},       {"burst", Burst},
  };
  for (const auto& [workload_name, workload] : kWorkloads) {
    if (workload_name == name) return workload;
  }
  return absl::InvalidArgumentError(absl::StrCat("--workload: no workload '", name, "'"));
}

absl::Status Run() {
  absl::StatusOr<Workload> workload = WorkloadNamed(absl::GetFlag(FLAGS_workload));
  if (!workload.ok()) return workload.status();
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = absl::GetFlag(FLAGS_endpoint),
                         .client_name = "mpigate_bench",
                         .max_running_tasks = absl::GetFlag(FLAGS_max_running_tasks)});
  if (!executor.ok()) return executor.status();
  return (*workload)(**executor);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::Status status = Run(); !status.ok()) {
    std::fprintf(stderr, "mpigate_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
