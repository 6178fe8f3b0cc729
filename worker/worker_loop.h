// WorkerLoop: the MPI side of a worker process. Runs the pool's initializer, announces the worker
// to the gateway, then receives task frames, runs them on the task thread and sends back result
// frames until the gateway says shut down.
//
// The gateway may hand it several tasks at once when they are short (the scheduler's prefetch):
// the loop takes every frame that has come before it starts the next task, and runs the tasks in
// the order they came, the rest waiting in its backlog; a cancel of a task still waiting drops it,
// answered CANCELLED, since it never started.
//
// Idle cost: it polls with MPI_Improbe and sleeps between polls (wire::PollBackoff) instead of
// blocking in MPI_Recv, which in Open MPI busy-polls a whole core.
//
// Where task code runs:
//   - Isolated (the default): plain, chunk and range tasks run in a task runner process
//     (worker/runner_process.h), started with the loop. The loop hands it the TaskFrames as they
//     came, every small one in the backlog at once and in one write (the runner runs them in
//     order, going from one to the next without waiting for the loop), and forwards the
//     ResultFrames as they come: those the runner wrote in a burst, which the loop reads ahead in
//     one read, go to the gateway in one MPI message (Tag::kResults), a large one alone. While
//     tasks run it waits on the runner's socket, forwarding progress and every 20 ms (or as soon
//     as the runner runs dry) taking the gateway's frames: a cancel is passed on (it sets the
//     running task's cancellation flag, or drops a task still queued in the runner; a forced
//     cancel of the running task kills the runner), a shutdown kills the runner and stops the
//     loop. When the runner dies under a task, that task fails with ABORTED, saying how, and
//     runner_lost; past the task's run timeout (counted from when the runner started it) the
//     runner is killed and the task fails with DEADLINE_EXCEEDED. A fresh runner is started after
//     the answer, so the pool keeps serving, and the tasks that were queued behind, which never
//     started, go to it; while it starts (its initializer runs) the loop does not listen.
//   - In process (WorkerOptions.in_process): on a task thread of this process, as the runner
//     would, except that a function cannot be killed: a forced cancel or the run timeout only
//     sets the cancellation flag (a timed-out task fails with DEADLINE_EXCEEDED when it returns),
//     and a shutdown during a task abandons it (kStoppedDuringTask).
//
// The initializer runs wherever task code runs: in each runner (replacements too), or on the
// task thread; and, in isolated mode when the registry holds gang functions, once more on this
// thread, where gang functions run.
//
// A gang task (TaskFrame.gang, worker/gang.h) runs on the loop's own thread instead, because its
// function makes MPI calls and MPI belongs to that thread: the loop makes the gang's communicator
// with the other members (MPI_Comm_create_group over WorkerGroup), calls the function, and frees
// the communicator. The loop cannot listen while the function runs, so the function's polls of
// GangContext::cancelled() do it, at most every millisecond; a shutdown heard then interrupts the
// call and is answered when it returns.
//
// Thread-safety: Run() makes MPI calls and must run on the thread that initialised MPI; one loop
// per process.
#ifndef MPIGATE_WORKER_WORKER_LOOP_H_
#define MPIGATE_WORKER_WORKER_LOOP_H_

#include <mpi.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "wire/task_peek.h"
#include "worker/registry.h"
#include "worker/runner_process.h"
#include "worker/task_runner.h"

namespace mpigate::worker {

// How the loop ended.
enum class LoopEnd {
  // The gateway said shut down while the worker was idle.
  kStopped,
  // In process only: the gateway said shut down while a task was still running. The task cannot
  // be interrupted: after finalising MPI the process must exit without waiting for it
  // (std::_Exit).
  kStoppedDuringTask,
};

// Tasks the gateway has handed this worker ahead of the one it runs (the scheduler's prefetch),
// in the order they came, as they came. Owned by the MPI thread.
class TaskBacklog {
 public:
  struct Entry {
    wire::TaskHeader header;
    std::string frame;
    // Interrupted while queued in the task runner: if that runner dies before it answers, the
    // task is answered as dropped rather than handed to the next one.
    bool interrupted = false;
  };

  // Appends a serialized TaskFrame; INTERNAL if it is not one.
  absl::Status Add(std::string frame);
  // Puts back a task taken with TakeFront(), ahead of the rest.
  void PushFront(Entry entry);
  // Removes the task `task_key` if it waits here; true if it did.
  bool Drop(uint64_t task_key);
  // The first task, removed. Only when not empty.
  Entry TakeFront();
  bool empty() const { return entries_.empty(); }
  // Only when not empty.
  bool front_is_gang() const { return entries_.front().header.gang; }
  size_t front_bytes() const { return entries_.front().frame.size(); }

 private:
  std::deque<Entry> entries_;
};

// The communicator that gang communicators are made from: it holds every worker of the pool, and
// may hold other processes (the gateway, in world mode), which need not take part.
struct WorkerGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  // Worker i is rank first_rank + i of `comm`.
  int first_rank = 0;
};

// The worker's heartbeats, if the gateway asked for them (wire::HeartbeatFrame): sent while the
// loop listens to the gateway, at most once per interval, and quiet (with the gateway told at
// once) while the loop may not listen for a while. Owned by the MPI thread.
class Heartbeat {
 public:
  // The gateway asked for one at least every `interval`.
  void Start(absl::Duration interval) { interval_ = interval; }
  // Sends a heartbeat if they were asked for and one is due.
  absl::Status MaybeSend(MPI_Comm gateway);
  // The loop may not listen for a while: says so now, and heartbeats are quiet until Loud().
  absl::Status Quiet(MPI_Comm gateway);
  // The loop listens again: the next MaybeSend() sends a heartbeat that is not quiet.
  void Loud();

 private:
  absl::Status Send(MPI_Comm gateway);

  absl::Duration interval_ = absl::InfiniteDuration();
  absl::Time next_ = absl::InfinitePast();
  bool quiet_ = false;
};

class WorkerLoop {
 public:
  // `gateway` reaches the gateway at rank 0: the parent intercommunicator of spawned workers, or
  // MPI_COMM_WORLD in world mode. `workers` is where gangs come from; it must use
  // MPI_ERRORS_RETURN (wire::ReturnErrors).
  // `rank` and `pool_size` are what tasks see in their TaskContext. `runner` starts the task
  // runner that runs plain tasks; nullopt runs them in this process.
  // `hello_timeout`: see WorkerOptions::hello_timeout.
  WorkerLoop(MPI_Comm gateway, WorkerGroup workers, const FunctionRegistry& registry, int rank,
             int pool_size, Initializer initializer, absl::Duration hello_timeout,
             std::optional<RunnerProcess::Options> runner);
  // Kills the task runner, if one runs, and reaps it.
  ~WorkerLoop();
  WorkerLoop(const WorkerLoop&) = delete;
  WorkerLoop& operator=(const WorkerLoop&) = delete;

  // Starts the task runner, runs the initializer, sends the hello frame, then serves tasks until
  // a shutdown frame, which it answers before returning. Returns the first MPI error instead if
  // there is one, or why the runner could not start (after saying so in the hello). After
  // kStoppedDuringTask the abandoned task still uses the registry: keep it alive until exit.
  absl::StatusOr<LoopEnd> Run();

  // After Run(): whether to disconnect from the gateway before finalising MPI. False if the
  // gateway said that its communicator with this worker lost a process
  // (ShutdownFrame.skip_disconnect).
  bool disconnect() const { return disconnect_; }

 private:
  // How a task handed to the runner ended: answered, or the gateway said shut down meanwhile.
  enum class TaskEnd { kEnded, kShutdown };

  // Kills the runner and answers the gateway's shutdown.
  absl::StatusOr<LoopEnd> Stop();

  // Starts a runner (killing the last one) and waits for its hello. ABORTED if it dies first.
  absl::StatusOr<wire::HelloFrame> StartRunner();

  // Starts a runner after the last one died or was killed; an error, and no runner, if it
  // cannot start or its initializer fails.
  absl::Status ReplaceRunner();

  // Runs the tasks at the front of the backlog in the runner, up to the first gang task, and
  // answers the gateway for each; returns once the runner has none left, or after it died or was
  // killed under one (the tasks queued behind it go back to the backlog).
  absl::StatusOr<TaskEnd> ServeRunner();

  // Makes sure a runner is up, replacing one that died idle. If none can start, fails the
  // backlog's tasks up to the first gang task as a lost runner's (ABORTED, runner_lost) and
  // returns false.
  absl::StatusOr<bool> EnsureRunner();

  // Hands the runner the tasks at the front of the backlog, up to the first gang task and within
  // a bound on their bytes; `now` is when the first starts if the runner had none.
  void FeedRunner(absl::Time now);

  // Answers the runner's first task with `failed` (having run since `start`) after the runner
  // died or was killed under it, starts a new runner, and puts the tasks queued behind back in
  // the backlog (answering those interrupted meanwhile as dropped).
  absl::Status FailFrontAndRestart(wire::ResultFrame failed, absl::Time start);

  // Sends the gateway a result (after those still unsent).
  absl::Status Answer(const wire::ResultFrame& result);

  // Sends the gateway the runner's results not yet sent: one as it is, several in one kResults
  // message.
  absl::Status FlushResults();

  MPI_Comm gateway_;
  const WorkerGroup workers_;
  const FunctionRegistry& registry_;
  const int rank_;
  const int pool_size_;
  const Initializer initializer_;
  const absl::Duration hello_timeout_;
  const std::optional<RunnerProcess::Options> runner_options_;
  // The runner; null in process, or when a replacement could not start.
  std::unique_ptr<RunnerProcess> runner_;
  // Tasks received and not yet handed to the runner (or, in process, started).
  TaskBacklog backlog_;
  // Tasks handed to the runner and not yet answered, in the order it runs them; their bytes, and
  // when the first started.
  std::deque<TaskBacklog::Entry> in_runner_;
  size_t in_runner_bytes_ = 0;
  absl::Time front_started_;
  // Results the runner wrote in a burst, serialized, not yet sent to the gateway (see
  // FlushResults), and their bytes; at most about kResultBatchBytes.
  static constexpr size_t kResultBatchBytes = 256 << 10;
  std::vector<std::string> unsent_results_;
  size_t unsent_bytes_ = 0;
  // Rung by the gateway after every frame it sends this worker, if it can reach it (see
  // wire/doorbell.h); gateway_rings_ once it has rung.
  std::optional<wire::Doorbell> doorbell_;
  bool gateway_rings_ = false;
  // A ring was taken while the runner worked, and the frame it announced not heard yet: it may
  // still be on its way.
  bool ring_unheard_ = false;
  // See disconnect().
  bool disconnect_ = true;
  Heartbeat heartbeat_;
};

// Tells the gateway this worker could not start (e.g. a registry error), so that it fails bootup
// with the reason instead of waiting.
absl::Status ReportStartupFailure(MPI_Comm gateway, const absl::Status& why);

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_WORKER_LOOP_H_
