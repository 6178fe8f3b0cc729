// RunnerExecutor: runs tasks in a task runner process (worker/runner_process.h), the default, so
// that a function that crashes takes down only the runner, never the MPI worker.
//
// It hands the runner the TaskFrames as they came, every small one in the backlog at once and in
// one write (the runner goes from one to the next without waiting for the worker), and forwards
// the ResultFrames as they come, those of a burst in one message (GatewayLink::AddRunnerResult).
// While tasks run it waits on the runner's socket (and the doorbell), forwarding progress and
// listening to the gateway every kListenWhileBusy, or as soon as the runner runs dry: a cancel is
// passed on (it sets the running task's flag, or drops a task still queued in the runner), a
// forced cancel of the running task kills the runner, a shutdown ends Serve().
//
// When the runner dies under a task, that task fails with ABORTED, saying how, and runner_lost;
// past the task's run timeout (counted from when the runner started it) the runner is killed and
// the task fails with DEADLINE_EXCEEDED. A fresh runner is started after the answer, and the tasks
// queued behind, which never started, go to it; while it starts the worker does not listen.
//
// Thread-safety: the TaskExecutor methods on the MPI thread only (the runner dies with the thread
// that spawned it).
#ifndef MPIGATE_WORKER_RUNNER_EXECUTOR_H_
#define MPIGATE_WORKER_RUNNER_EXECUTOR_H_

#include <cstddef>
#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wire/frames.pb.h"
#include "worker/gateway_link.h"
#include "worker/registry.h"
#include "worker/runner_process.h"
#include "worker/task_backlog.h"
#include "worker/task_executor.h"
#include "worker/task_runner.h"

namespace mpigate::worker {

class RunnerExecutor final : public TaskExecutor {
 public:
  // `link`, `backlog` and `registry` must outlive it. The runner runs `initializer` before its
  // hello; it also runs once on the MPI thread if the registry holds gang functions (they run
  // there).
  RunnerExecutor(GatewayLink& link, TaskBacklog& backlog, const FunctionRegistry& registry,
                 int rank, int pool_size, Initializer initializer, RunnerProcess::Options options);
  // Kills the runner, if one runs, and reaps it.
  ~RunnerExecutor() override;

  // Starts the first runner. An error if it cannot start (not if its initializer fails: the
  // hello's initializer_error says that).
  absl::Status Start(wire::HelloFrame& hello) override;
  absl::StatusOr<ServeEnd> Serve() override;
  // Kills the runner.
  void Stop() override { runner_.reset(); }

 private:
  // Starts a runner (killing the last one) and waits for its hello. ABORTED if it dies first.
  absl::StatusOr<wire::HelloFrame> StartRunner();

  // Starts a runner after the last one died or was killed; an error, and no runner, if it cannot
  // start or its initializer fails.
  absl::Status ReplaceRunner();

  // Makes sure a runner is up, replacing one that died idle. If none can start, fails the
  // backlog's tasks up to the first gang task as a lost runner's (ABORTED, runner_lost) and
  // returns false.
  absl::StatusOr<bool> EnsureRunner();

  // Hands the runner the tasks at the front of the backlog, up to the first gang task and within
  // a bound on their bytes; `now` is when the first starts if the runner had none.
  void FeedRunner(absl::Time now);

  // Answers the runner's first task with `failed` after the runner died or was killed under it,
  // starts a new runner, and puts the tasks queued behind back in the backlog (answering those
  // interrupted meanwhile as dropped).
  absl::Status FailFrontAndRestart(wire::ResultFrame failed);

  GatewayLink& link_;
  TaskBacklog& backlog_;
  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  const Initializer initializer_;
  const RunnerProcess::Options options_;
  // The runner; null once stopped, or when a replacement could not start.
  std::unique_ptr<RunnerProcess> runner_;
  // Tasks handed to the runner and not yet answered, in the order it runs them; their bytes, and
  // when the first started.
  std::deque<TaskBacklog::Entry> in_runner_;
  size_t in_runner_bytes_ = 0;
  absl::Time front_started_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_RUNNER_EXECUTOR_H_
