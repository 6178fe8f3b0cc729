// scheduler_bench: the scheduler's own cost per task, in process, with no transport, gRPC or MPI:
// one session submits batches of tasks, and the loop plays the transport (AwaitWork, then
// Complete of everything it handed out) and the session's stream (TakeEvents, Ack). Prints the
// best of --rounds runs, `scheduler,<cap>,<ns>`: the thread's CPU time per task, which other
// processes on a shared machine disturb less than the time on the clock, so that what a change
// costs on the hot path shows without the noise of a whole pool.
//
//   scheduler_bench --tasks=1000000 --max_running_tasks=0
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "server/scheduler.h"

ABSL_FLAG(int, tasks, 1000000, "Tasks per round.");
ABSL_FLAG(int, batch, 1000, "Tasks per Submit, as one SubmitTasks message brings them.");
ABSL_FLAG(int, workers, 2, "Workers of the pool.");
ABSL_FLAG(int, max_tasks_per_worker, 16, "As mpigate-server's flag (prefetch).");
ABSL_FLAG(uint32_t, max_running_tasks, 0, "The session's cap; 0: none.");
ABSL_FLAG(int, rounds, 5, "Runs; the best is printed.");

namespace mpigate::server {
namespace {

class NullListener : public SessionListener {
 public:
  void OnSessionEvents() override {}
};

double ThreadCpuNanos() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e9 + static_cast<double>(now.tv_nsec);
}

// One round: CPU nanoseconds per task.
double Round() {
  Scheduler::Options options;
  options.workers = absl::GetFlag(FLAGS_workers);
  options.max_tasks_per_worker = absl::GetFlag(FLAGS_max_tasks_per_worker);
  Scheduler scheduler(std::move(options));
  std::vector<v1::FunctionInfo> functions(1);
  functions[0].set_name("echo");
  scheduler.PoolReady(std::move(functions));
  const SessionId session =
      *scheduler.OpenSession("scheduler_bench", std::make_shared<NullListener>(), 0, {}, {},
                             absl::GetFlag(FLAGS_max_running_tasks));

  const int tasks = absl::GetFlag(FLAGS_tasks);
  const int batch = absl::GetFlag(FLAGS_batch);
  std::vector<Scheduler::WorkerResult> results;
  std::vector<uint64_t> acks;
  uint64_t next_id = 1;
  int ended = 0;
  const double start = ThreadCpuNanos();
  while (ended < tasks) {
    if (next_id <= static_cast<uint64_t>(ended) + batch &&
        next_id <= static_cast<uint64_t>(tasks)) {
      google::protobuf::RepeatedPtrField<v1::TaskSpec> specs;
      for (int i = 0; i < batch && next_id <= static_cast<uint64_t>(tasks); ++i) {
        v1::TaskSpec& spec = *specs.Add();
        spec.set_task_id(next_id++);
        spec.set_function("echo");
      }
      (void)scheduler.Submit(session, specs);
    }
    DispatchWork work = scheduler.AwaitWork(absl::ZeroDuration());
    results.clear();
    for (const Assignment& assignment : work.assignments) {
      Scheduler::WorkerResult& result = results.emplace_back();
      result.worker = assignment.worker;
      result.result.set_task_key(assignment.frame.task_key());
      result.result.set_run_us(1);
    }
    scheduler.Complete(absl::MakeSpan(results));
    SessionEvents events = scheduler.TakeEvents(session);
    acks.clear();
    for (const v1::TaskOutcome& outcome : events.outcomes) acks.push_back(outcome.task_id());
    ended += static_cast<int>(acks.size());
    (void)scheduler.Ack(session, acks);
  }
  return (ThreadCpuNanos() - start) / tasks;
}

}  // namespace
}  // namespace mpigate::server

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  double best = 0;
  for (int i = 0; i < absl::GetFlag(FLAGS_rounds); ++i) {
    const double round = mpigate::server::Round();
    best = i == 0 ? round : std::min(best, round);
  }
  std::cout << "scheduler," << absl::GetFlag(FLAGS_max_running_tasks) << "," << best << std::endl;
  return 0;
}
