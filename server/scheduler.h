// Scheduler: owns every task and session of the gateway, and decides which task runs on which
// worker. Pure logic: no MPI, no gRPC, no threads of its own, so it is unit-tested with fakes.
//
// Two sides call it:
// - the gRPC adapter (any gRPC thread): open sessions, submit, cancel, shut down, collect events;
// - the MPI transport (its one thread): AwaitWork() for tasks to send, Complete() for results.
//
// It holds one lock, and under it the collaborators that own the parts of its state:
// TaskIntake (validation, the function table, v1 to wire), SessionTable (sessions, resume
// tokens, grace periods, outboxes, the unread bound's figures), OutcomeBuilder (outcomes from
// results, fitted to their session), WorkerPicker (idle and busy workers, prefetch) and
// PoolMetrics (the scrape). What stays here is what ties them together: the tasks, each
// session's queue, fair share, caps and group tasks, and the pool's state.
//
// Fair share: each session has its own FIFO queue, and idle workers take tasks from the sessions
// round-robin. Prefetch (WorkerPicker): a worker of short tasks is handed several, within
// Options::prefetch_window of work; a task handed to a worker is running: it can be interrupted
// but no longer cancelled. A group task (a gang on TaskOptions.gang_size workers, or a broadcast
// on all) only starts on idle workers, and while one at the head of its session's turn waits for
// them nothing else starts, from any session, so that small tasks cannot starve it. A session's
// cap (OpenSession's max_running_tasks) counts its tasks on workers, prefetched ones too; a
// session at its cap leaves the ring of turns until one of them leaves its worker.
//
// Every accepted task ends exactly once with a TaskOutcome: it succeeds, fails, or is cancelled
// (by the client, its session's shutdown, its queue timeout, or the service draining). Outcomes
// wait in the session's outbox for its listener, and are kept until acknowledged (Retain, Ack)
// so that a new stream can take over a detached session (Resume) within Options::resume_grace.
// An outcome its session cannot send or hold becomes a RESOURCE_EXHAUSTED failure, which fits in
// what its task reserved at submit, so a client that stops reading costs a bounded amount of
// memory. Shared memory objects handed in (inputs) or out (results) are the scheduler's until
// their task ends or their outcome is dropped unread; Options::release_shared_object removes them.
//
// Crashes and lost workers: a task whose runner died (ResultFrame.runner_lost) runs again while
// TaskOptions.max_retries allow, and keeps a copy of its frame while it runs for that. A lost
// worker (WorkerLost) ends its running task that way, and puts the unstarted ones of its backlog
// back at the front of their queues; it takes no task until WorkerUp().
//
// The pool's state (v1::PoolState): BOOTING from construction (tasks queue), READY from
// PoolReady(), BROKEN from PoolBroken(), DRAINING from Drain(); every session is told of each.
//
// Thread-safety: every method may be called from any thread. Listeners are called without the
// scheduler's lock held, so they may call back into the scheduler.
#ifndef MPIGATE_SERVER_SCHEDULER_H_
#define MPIGATE_SERVER_SCHEDULER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/map.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"
#include "server/outcome_builder.h"
#include "server/pool_metrics.h"
#include "server/pool_view.h"
#include "server/session_table.h"
#include "server/task_intake.h"
#include "server/task_metrics.h"
#include "server/worker_picker.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

// A task for the transport to send to a worker. A group task is one Assignment per member worker,
// each with its own copy of the frame.
struct Assignment {
  int worker = 0;
  wire::TaskFrame frame;
};

// A running task whose worker should set its cancellation flag.
struct Interrupt {
  int worker = 0;
  uint64_t task_key = 0;
  // Kill the task rather than set its flag (CancelTasks.force).
  bool force = false;
};

// What Resume() hands the gRPC adapter for SessionOpened.
struct ResumedSession {
  SessionId id = 0;
  // The highest task id the session has received.
  uint64_t last_task_id = 0;
  // The session's tasks with no acknowledged outcome: queued, running, or ended with an outcome to
  // be collected again. Ascending.
  std::vector<uint64_t> pending_task_ids;
};

// What AwaitWork() hands the transport.
struct DispatchWork {
  std::vector<Assignment> assignments;
  std::vector<Interrupt> interrupts;
  // StopDispatch() was called: the transport should finish in-flight tasks and stop.
  bool stopping = false;
};

class Scheduler {
 public:
  struct Options {
    // Number of workers, indexed 0..workers-1. None is idle until PoolReady().
    int workers = 1;
    // The clock for queue timeouts and timing; tests pass a fake.
    std::function<absl::Time()> clock = [] { return absl::Now(); };
    // Functions this service refuses to run, with why (e.g. exec without --allow-exec):
    // submitting one is PERMISSION_DENIED with that message.
    absl::flat_hash_map<std::string, std::string> refused_functions;
    // How long a detached session waits for Resume() before it is abandoned. Zero: Detach()
    // abandons at once, and sessions cannot be resumed.
    absl::Duration resume_grace = absl::Seconds(60);
    // The most bytes of outcomes one session may hold for its client, reservations for its
    // unfinished tasks included (OutcomeBuilder); 0 for no limit.
    uint64_t max_unread_result_bytes = 0;
    // The largest gRPC message the service sends or accepts; 0 for no limit.
    uint64_t max_message_bytes = 0;
    // The most sessions open at once, detached ones included (Run calls count while they run):
    // at it, OpenSession() abandons the detached session that has waited longest to make room,
    // and fails with RESOURCE_EXHAUSTED only if every session has its client. 0 for no limit.
    size_t max_sessions = 0;
    // The most tasks one session may have queued (accepted, not yet on a worker): a task submitted
    // beyond it is rejected with RESOURCE_EXHAUSTED, and later ones are accepted again as the
    // queue drains. 0 for no limit.
    size_t max_queued_tasks_per_session = 0;
    // The most tasks one worker holds at once (WorkerPicker); 1 hands each worker one task at a
    // time.
    int max_tasks_per_worker = 1;
    // How much work, by its recent run times, a worker's backlog may hold.
    absl::Duration prefetch_window = absl::Milliseconds(1);
    // How long a task's start may wait to be reported to its session, so that it goes in the same
    // update as the task's outcome if the task ends by then: for a short task that saves an
    // update, a gRPC write and a wake-up of the client's reader (measured: p50 of sequential
    // Python calls 560 -> 275 us, C++ 128 -> 106 us). Zero: reported at once.
    absl::Duration start_report_delay = absl::Milliseconds(1);
    // How long the outcomes of a session with a backlog (at least backlog_tasks of its tasks
    // queued when one ends) may wait to be reported, with the starts that come due meanwhile, so
    // that they go out together; they go at once when fewer than backlog_tasks are left queued.
    // Such a client waits on none of them in particular (the workers have its queued tasks to go
    // on with), and an update per delay instead of one per finished batch saves it and the
    // gateway wake-ups, reads and writes. Zero: reported at once.
    absl::Duration backlog_outcome_delay = absl::Milliseconds(20);
    size_t backlog_tasks = 64;
    // Held outcomes go at once when the session holds this many: an update's size is bounded by
    // a count, not by how fast the session's tasks end. Several busy sessions sharing the pool
    // each end their tasks more slowly than one alone, and held for a fixed time they got updates
    // as many times smaller (more of them, each a write, a read and wake-ups per task).
    size_t backlog_outcome_batch = 1024;
    // Makes each session's resume token; tests pass a predictable one. Tokens must be unique.
    std::function<absl::StatusOr<std::string>()> token_source = RandomResumeToken;
    // Tasks run in task runner processes (--isolation=process), each of which can give its tasks
    // the environment of their session (OpenSession's `env`). False: tasks run in the worker
    // processes, whose one environment all share, and a session with `env` is refused.
    bool task_environments = true;
    // The name prefix of the gateway's shared memory objects (common/shared_memory.h); empty: no
    // session may use shared memory.
    std::string shared_memory_prefix;
    // Removes a shared memory object the scheduler owned (a task's input once the task has
    // ended, a result dropped unread). Called with the scheduler's lock held: it must be quick
    // and must not call back.
    std::function<void(const std::string& name)> release_shared_object = [](const std::string&) {};
  };

  explicit Scheduler(Options options);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // --- Sessions (gRPC side) ---

  // Opens a session whose events go to `listener`. `client_max_message_bytes` is the largest
  // message its client accepts (0: any); `shared` says whether it may use shared memory (ignored
  // without Options::shared_memory_prefix). UNAVAILABLE while draining. At Options::max_sessions
  // it abandons the detached session that has waited longest (see Abandon), and fails with
  // RESOURCE_EXHAUSTED if no session is detached.
  //
  // `env` (OpenSession.env) is set for every task of the session on top of the pool's
  // environment: INVALID_ARGUMENT for a name that is empty or holds '=' or NUL, a value that holds
  // NUL, or more than 64 KiB in all; FAILED_PRECONDITION without Options::task_environments.
  //
  // `max_running_tasks` caps how many of its tasks are on workers at once (see the top of this
  // file); 0 for no cap.
  absl::StatusOr<SessionId> OpenSession(
      std::string client_name, std::shared_ptr<SessionListener> listener,
      uint64_t client_max_message_bytes = 0, SharedMemoryUse shared = {},
      const google::protobuf::Map<std::string, std::string>& env = {},
      uint32_t max_running_tasks = 0);

  // Whether sessions may use shared memory: the prefix of its objects, or empty.
  // Constant after construction, so read without the lock.
  const std::string& shared_memory_prefix() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return intake_.shared_memory_prefix();
  }

  // The secret that resumes the session (SessionOpened.resume_token). NOT_FOUND for a session
  // that does not exist.
  absl::StatusOr<std::string> ResumeToken(SessionId session) const;

  absl::Duration resume_grace() const { return resume_grace_; }
  uint64_t max_message_bytes() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return outcomes_.max_message_bytes();
  }

  // Accepts or rejects each task on its own; returns the rejections. Payloads are moved out of
  // `tasks`. On a resumed session, a task whose id the session holds (not ended, or its outcome not
  // acknowledged) is a re-send and is ignored. NOT_FOUND if the session does not exist.
  absl::StatusOr<std::vector<v1::TaskRejection>> Submit(
      SessionId session, google::protobuf::RepeatedPtrField<v1::TaskSpec>& tasks);

  // Cancels those of the tasks that are still queued and, if `interrupt_running` or `force`,
  // interrupts those that are running (with `force`, has them killed). NOT_FOUND if the session
  // does not exist.
  absl::StatusOr<std::vector<v1::CancelResult>> Cancel(SessionId session,
                                                       absl::Span<const uint64_t> task_ids,
                                                       bool interrupt_running = false,
                                                       bool force = false);

  // Stops the session accepting tasks and, if `cancel_pending`, cancels its queued tasks. The
  // session closes (SessionEvents::closed) once all its tasks have outcomes. Idempotent.
  absl::Status Shutdown(SessionId session, bool cancel_pending);

  // The client is gone: cancel the session's queued tasks, interrupt its running ones and drop
  // their outcomes, forget the session once they end, and never call its listener again.
  // Idempotent.
  void Abandon(SessionId session);

  // The session's stream ended before its `closed` was written: its listener is dropped and
  // never called again, its tasks run on and their outcomes are kept, and it waits for Resume()
  // until the grace period (Options::resume_grace) passes; then it is abandoned. Abandons at once
  // if the grace period is zero. Idempotent; no effect on an abandoned session.
  void Detach(SessionId session);

  // A new stream takes over the detached session whose resume token is `token`, with `listener`.
  // `acked_task_ids` are acknowledged first (as Ack). Then every outcome the client has not
  // acknowledged is collected again through TakeEvents(): those given back by Retain() in task id
  // order, then those never collected. `client_max_message_bytes` and `shared` as for OpenSession,
  // for the new client. From now on tasks the client re-sends while the session still holds them
  // are ignored (see Submit). NOT_FOUND if no session has this token (it never
  // existed, closed, or was abandoned); FAILED_PRECONDITION if its stream has not ended.
  absl::StatusOr<ResumedSession> Resume(absl::string_view token,
                                        std::shared_ptr<SessionListener> listener,
                                        absl::Span<const uint64_t> acked_task_ids,
                                        uint64_t client_max_message_bytes = 0,
                                        SharedMemoryUse shared = {});

  // The client has handled the outcomes of `task_ids`: the session forgets them. Ids it does not
  // hold, and those whose outcome has never been collected (TakeEvents), which the client cannot
  // have read, are ignored. NOT_FOUND if the session does not exist.
  absl::Status Ack(SessionId session, absl::Span<const uint64_t> task_ids);

  // Gives back outcomes collected with TakeEvents() once their write to the session's stream has
  // completed, or has failed: they are kept until acknowledged, to be collected again by a
  // resumed stream. Moves them out of `outcomes`. Those acknowledged meanwhile, and those of a
  // session that is gone, are dropped.
  void Retain(SessionId session, google::protobuf::RepeatedPtrField<v1::TaskOutcome>& outcomes);

  // Hands over the session's pending outcomes (and whether it has closed). Empty for an unknown
  // session. The outcomes still count against the session's unread bytes until acknowledged;
  // give them back with Retain() once written.
  SessionEvents TakeEvents(SessionId session);

  // The `closed` that TakeEvents() reported has been written to the session's stream: the session
  // is gone, and its id and resume token are no longer valid. Until then a stream that breaks
  // detaches it as any other, and resuming it collects its unacknowledged outcomes and `closed`
  // again. No effect on a session that has not closed.
  void ForgetClosed(SessionId session);

  // --- Service lifecycle ---

  // The pool's state, for a session that has just opened.
  v1::PoolStateChange PoolState() const;

  // Every worker is up and registered `functions`: tasks naming anything else are rejected (and
  // those already queued fail with NOT_FOUND), as are tasks whose payload_type is not the
  // function's request type, or whose gang_size or range the function does not allow
  // (INVALID_ARGUMENT); the workers become idle. Only from BOOTING.
  void PoolReady(std::vector<v1::FunctionInfo> functions);

  // The pool can run no task, because of `reason`: queued and new tasks fail with
  // FAILED_PRECONDITION "BrokenExecutor: <reason>". Only from BOOTING.
  void PoolBroken(absl::string_view reason);

  // Fails every running task with CANCELLED and `reason`; their workers are not reused. For the
  // end of a drain's grace period, just before the workers are stopped.
  void FailRunning(absl::string_view reason);

  // Stops accepting sessions and tasks (UNAVAILABLE), cancels every queued task, and shuts every
  // session down so each closes when its running tasks end. Idempotent.
  void Drain(absl::string_view reason);

  // Waits until no task is running or `deadline` passes; true if none is running.
  bool AwaitNoRunningTasks(absl::Time deadline);

  // Makes AwaitWork() return `stopping` from now on.
  void StopDispatch();

  // The pool now, with what the live page and `mpigate top` show (fields 20-59): built under the
  // lock as a copy; format it after.
  v1::PoolStatus Status() const;

  // What a scrape shows: the pool's gauges and a copy of the tasks' counters and histograms,
  // taken under the lock; a value, formatted after the lock is released.
  using MetricsSnapshot = PoolMetrics;
  MetricsSnapshot Metrics() const;

  // Metrics().PrometheusText(): a scrape holds the lock only while the figures are copied, not
  // while the page is written.
  std::string PrometheusText() const;

  // The workers' functions, sorted by name. UNAVAILABLE while booting; FAILED_PRECONDITION
  // "BrokenExecutor: ..." if the pool never became ready.
  absl::StatusOr<std::vector<v1::FunctionInfo>> Functions() const;

  int workers() const { return workers_; }

  // --- Dispatch (transport side) ---

  // Waits up to `timeout` (or until a detached session's grace period ends) until there is a task
  // for an idle worker, an interrupt to deliver, or dispatch is stopping, then fails queued tasks
  // whose queue timeout has passed, abandons detached sessions whose grace period has passed,
  // assigns queued tasks to idle workers (fair share), and hands over the interrupts.
  DispatchWork AwaitWork(absl::Duration timeout);

  // The worker finished one of the tasks it was handed. A group task ends once every
  // member has reported: a gang with gang rank 0's result, or the error of the lowest gang rank
  // that failed; a broadcast with one item per worker. A task whose runner was lost
  // (result.runner_lost) is queued again if it has retries left and was not interrupted.
  void Complete(int worker, wire::ResultFrame result);

  // A worker's result, for Complete(results).
  struct WorkerResult {
    int worker = -1;
    wire::ResultFrame result;
  };
  // Complete() for each result, in order, under one lock, and each session's listener told once
  // after all of them: the results that arrive together leave in one write per session instead of
  // the first alone and the rest after it.
  void Complete(absl::Span<WorkerResult> results);

  // The worker's task reported progress (for a group task, any member may). Ignored if that task
  // is no longer running on that worker.
  void Progress(int worker, const wire::ProgressFrame& progress);

  // --- Lost workers (transport side) ---

  // The worker's process is gone; `why` names it and says how it died, for its tasks' errors.
  // The task it ran ends as one whose runner was lost: it is queued again if its retries allow,
  // else fails ABORTED with `why`. The single tasks waiting in its backlog never started, as far
  // as the scheduler knows, and go back to the front of their sessions' queues without using an
  // attempt (unless interrupted, or while draining: they end as the running one does). A group
  // task (it holds nothing else) takes the loss as this member's result, and a gang ends with it
  // once its other members have reported. Those other members are interrupted, and returned: a
  // gang rank blocked in a collective with the dead one is never released by MPI, so the
  // transport may have to kill it (it is then lost in turn). The worker takes no task until
  // WorkerUp(). No effect on a worker already out of service. `degraded`, if given, is why the
  // pool is degraded now (as SetDegraded): set with the loss, so that no status shows the worker
  // down and the pool whole.
  std::vector<int> WorkerLost(int worker, absl::string_view why,
                              std::optional<std::string> degraded = std::nullopt);

  // Takes the worker out of service if it is idle, so that the transport may put another process
  // in its place; true if it did. No task is affected.
  bool TakeIdleWorker(int worker);

  // A (new) process serves the worker, which was out of service (WorkerLost, TakeIdleWorker): it
  // becomes idle, with nothing learnt of its run times. The process is of MPI job `job` (any
  // number the transport gives each job, 0 for the first): a gang's workers are taken from one.
  void WorkerUp(int worker, int job);

  // A process serves `worker` from now on, on `host` with `pid`, its task runner `runner_pid` (0
  // for none): for Status()'s worker_list.
  void SetWorkerProcess(int worker, absl::string_view host, int pid, int runner_pid);

  // Why the pool is degraded (workers lost and not yet replaced, replacements failing), for
  // Status() and metrics; "" once it is whole again.
  void SetDegraded(std::string reason);

  // Makes the waiting (or the next) AwaitWork() return at once, so that the transport can act on
  // an event of its own, such as a worker process that ended.
  void WakeDispatch();

 private:
  using TaskKey = uint64_t;
  using FunctionTraits = TaskIntake::FunctionTraits;

  struct Task {
    SessionId session = 0;
    // Its function's figures in metrics_; null while its function is not known yet (submitted
    // while booting): counted then, as accepted with payload_bytes, once it is (PoolReady) or
    // when it ends before that (under "other").
    TaskMetrics::Function* metrics = nullptr;
    uint64_t payload_bytes = 0;
    uint64_t client_id = 0;
    bool running = false;
    // TaskOptions.broadcast and .gang_size, as submitted.
    bool broadcast = false;
    uint32_t gang_size = 0;
    // Its function is a gang function. Known at submit once the pool is ready, and for tasks
    // queued while booting from PoolReady(), before any task runs.
    bool gang_function = false;
    // Its workers have been asked to set its cancellation flag, or (forced) to kill it.
    bool interrupted = false;
    // It counts against its session's cap: the session has one, and the task is not a
    // broadcast. Each member holds one of the session's slots while it runs it.
    bool capped = false;
    bool forced = false;
    // TaskOptions.max_retries, and how many times the task has been started.
    uint32_t max_retries = 0;
    uint32_t attempts = 0;
    // Room in its session's unread bound for the failure it may end as, held until it ends.
    uint64_t reserved_bytes = 0;
    // Members still running (a group task ends when none is).
    int running_members = 0;
    absl::Time enqueued;
    absl::Time started;
    // The workers running it since dispatch: one for a single task (inline, so that those never
    // allocate), the gang in gang rank order, or every worker in order for a broadcast.
    absl::InlinedVector<int, 1> members;
    // A group task's results by member, filled in as the members report; empty otherwise.
    std::vector<wire::ResultFrame> results;
    // TaskSpec.payload_type, for PoolReady() to check tasks queued while booting.
    std::string payload_type;
    // The shared memory object holding its input, released when it ends; empty for none. Kept
    // apart from the frame, which the transport may have taken.
    std::string shared_input;
    // Holds the function and input until the task is dispatched, and while it runs if it may run
    // again (attempts <= max_retries) or waits behind another in its worker's backlog.
    wire::TaskFrame frame;

    // Runs on several workers, each reporting on its own.
    bool group() const { return broadcast || gang_function; }
  };

  // Listeners to call once the lock is released.
  using Notifications = std::vector<std::shared_ptr<SessionListener>>;
  void Notify(Notifications& notifications);

  void CompleteLocked(int worker, wire::ResultFrame result, absl::Time now,
                      Notifications& notifications) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the task `key` off the worker's list (and the worker's cap share off its session);
  // false if the worker does not hold it.
  bool ReleaseFromWorkerLocked(int worker, TaskKey key, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks for the running task's workers (every member still running it) to be told to set its
  // cancellation flag, or with `force` to kill it; once per task and kind.
  void InterruptLocked(TaskKey key, Task& task, bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts a task whose runner was lost back at the front of its session's queue.
  void RequeueLocked(TaskKey key, Task& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts the session into the ready ring if it has queued tasks, is not there yet, and is below
  // its cap.
  void EnterReadyRingLocked(SessionId id, Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `members` workers have let go of a capped task of session `id`: frees their slots, and gives
  // the session its turns again if it had left the ring at its cap.
  void ReleaseCapLocked(SessionId id, size_t members) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a task that never ran or has just finished: frees it and puts `outcome` in its
  // session's outbox. Callers then call MaybeNotifyLocked for the session; it is not done here
  // so that bulk cancellation never erases a session it is iterating over.
  void EndTaskLocked(TaskKey key, v1::TaskOutcome outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a queued task that will never run (cancelled, expired, unknown function, broken pool);
  // see EndTaskLocked.
  void EndQueuedLocked(TaskKey key, v1::TaskState state, absl::StatusCode code,
                       absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelAllQueuedLocked(Session& session, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next live queued task of `session`, left in its queue, or 0. Drops the keys of ended
  // tasks ahead of it.
  TaskKey PeekQueuedLocked(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How many workers the task runs on.
  size_t WorkersNeeded(const Task& task) const;
  // Puts the queued task `key` on the workers in task.members: appends its assignments to `work`.
  void StartLocked(TaskKey key, Task& task, absl::Time now, DispatchWork& work)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the session abandoned (see Abandon) with `why` for its queued tasks; the caller drops
  // its listener and then calls MaybeNotifyLocked, which forgets it once nothing of it runs.
  void AbandonLocked(Session& session, absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Abandons detached sessions whose grace period has passed by `now`.
  void ExpireGracePeriodsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records that the session's task `client_id` started; its listener hears of it once the
  // start is due (Options::start_report_delay) or with the session's next other event.
  void HoldStartLocked(SessionId id, Session& session, uint64_t client_id, absl::Time now,
                       Notifications& notifications) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a session's held starts (or outcomes) are due, and the session.
  using HeldReport = std::pair<absl::Time, SessionId>;
  // Whether the report still has starts to report: they have not gone, and are not about to go,
  // out with other events.
  bool StartsHeldLocked(const HeldReport& report) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells the listeners of sessions whose held starts are due by `now`.
  void ReportDueStartsLocked(absl::Time now, Notifications& notifications)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The session's first outcome since its listener last collected has just joined its outbox:
  // holds it back (Options::backlog_outcome_delay) if the session has a backlog.
  void MaybeHoldOutcomesLocked(SessionId id, Session& session, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the report still has outcomes to report, as StartsHeldLocked for starts.
  bool OutcomesHeldLocked(const HeldReport& report) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells the listeners of sessions whose held outcomes are due by `now`.
  void ReportDueOutcomesLocked(absl::Time now, Notifications& notifications)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireQueueTimeoutsLocked(absl::Time now, Notifications& notifications)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a call of the session's listener if it has something to collect; forgets an abandoned
  // session whose tasks have all ended.
  void MaybeNotifyLocked(SessionId id, Notifications& notifications)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a pool state change and tells every session.
  void SetPoolStateLocked(v1::PoolState state, absl::string_view reason,
                          Notifications& notifications) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::PoolStateChange PoolStateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Status()'s fields for the live page and `mpigate top` (PoolStatus fields 20-59)
  // (server/scheduler_view.cc).
  void AppendPoolViewLocked(absl::Time now, v1::PoolStatus& status) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const int workers_;
  const std::function<absl::Time()> clock_;
  const absl::Time started_;
  const absl::Duration resume_grace_;
  const absl::Duration start_report_delay_;
  const absl::Duration backlog_outcome_delay_;
  const size_t backlog_tasks_;
  const size_t backlog_outcome_batch_;
  const size_t max_sessions_;
  const std::function<absl::StatusOr<std::string>()> token_source_;

  mutable absl::Mutex mu_;
  // The collaborators, each owning its part of the state.
  TaskIntake intake_ ABSL_GUARDED_BY(mu_);
  SessionTable sessions_ ABSL_GUARDED_BY(mu_);
  OutcomeBuilder outcomes_ ABSL_GUARDED_BY(mu_);
  WorkerPicker picker_ ABSL_GUARDED_BY(mu_);
  TaskMetrics metrics_ ABSL_GUARDED_BY(mu_);
  // What the live page and `mpigate top` show beyond metrics_.
  PoolView view_ ABSL_GUARDED_BY(mu_);

  v1::PoolState pool_state_ ABSL_GUARDED_BY(mu_) = v1::POOL_STATE_BOOTING;
  // Why the pool is BROKEN or DRAINING.
  std::string pool_reason_ ABSL_GUARDED_BY(mu_);
  // The grace deadline AwaitWork() is waiting for (InfiniteFuture when none, or when it is not
  // waiting): a session detached meanwhile with an earlier one wakes it (HasWorkLocked).
  absl::Time grace_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Likewise the due time of the first held outcomes it is waiting for.
  absl::Time outcome_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::node_hash_map<TaskKey, Task> tasks_ ABSL_GUARDED_BY(mu_);
  // Sessions with queued tasks that may start one, in the order they get their next turn: a
  // session at its cap is not here. May hold sessions whose queued tasks have all ended since,
  // which AwaitWork() drops.
  std::deque<SessionId> ready_ring_ ABSL_GUARDED_BY(mu_);
  // The group task at the front of the ring that is waiting for this many idle workers (of one
  // MPI job, for a gang), during which nothing else starts; 0 when none is waiting. Cleared when
  // it starts or ends, so that AwaitWork() neither wakes for workers it cannot take nor keeps
  // others waiting for a task gone.
  TaskKey held_key_ ABSL_GUARDED_BY(mu_) = 0;
  size_t held_need_ ABSL_GUARDED_BY(mu_) = 0;
  bool held_one_job_ ABSL_GUARDED_BY(mu_) = false;
  // Queue deadlines, earliest first; entries of tasks that have left the queue are skipped.
  using Deadline = std::pair<absl::Time, TaskKey>;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> queue_deadlines_
      ABSL_GUARDED_BY(mu_);
  // Sessions holding starts back (Options::start_report_delay), in the order their first held
  // start came, with when it is due; an entry whose starts went out since is skipped.
  std::deque<HeldReport> start_reports_ ABSL_GUARDED_BY(mu_);
  // Sessions holding outcomes back (Options::backlog_outcome_delay), likewise.
  std::deque<HeldReport> outcome_reports_ ABSL_GUARDED_BY(mu_);
  // Interrupts for the transport to deliver.
  std::vector<Interrupt> interrupts_ ABSL_GUARDED_BY(mu_);
  size_t queued_count_ ABSL_GUARDED_BY(mu_) = 0;
  TaskKey next_task_key_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // WakeDispatch() was called and AwaitWork() has not returned since.
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // Why the pool is degraded, or "".
  std::string degraded_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SCHEDULER_H_
