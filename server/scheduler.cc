#include "server/scheduler.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mpigate::server {
namespace {

uint64_t MicrosBetween(absl::Time from, absl::Time to) {
  return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(to - from)));
}

// The queue timeout a client asked for. absl::Milliseconds takes an int64_t, so a value above its
// range (e.g. UINT64_MAX for "no real limit") would wrap negative and expire the task at once.
absl::Duration QueueTimeout(uint64_t timeout_ms) {
  if (timeout_ms > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InfiniteDuration();
  }
  return absl::Milliseconds(static_cast<int64_t>(timeout_ms));
}

}  // namespace

Scheduler::Scheduler(Options options)
    : workers_(options.workers),
      clock_(std::move(options.clock)),
      started_(clock_()),
      resume_grace_(std::max(options.resume_grace, absl::ZeroDuration())),
      start_report_delay_(std::max(options.start_report_delay, absl::ZeroDuration())),
      backlog_outcome_delay_(std::max(options.backlog_outcome_delay, absl::ZeroDuration())),
      backlog_tasks_(options.backlog_tasks),
      backlog_outcome_batch_(std::max<size_t>(options.backlog_outcome_batch, 1)),
      max_sessions_(options.max_sessions),
      token_source_(std::move(options.token_source)),
      intake_({.workers = options.workers,
               .refused_functions = std::move(options.refused_functions),
               .max_queued_tasks_per_session = options.max_queued_tasks_per_session,
               .max_unread_result_bytes = options.max_unread_result_bytes,
               .task_environments = options.task_environments,
               .shared_memory_prefix = std::move(options.shared_memory_prefix)}),
      outcomes_(options.workers, options.max_message_bytes, options.max_unread_result_bytes,
                std::move(options.release_shared_object)),
      picker_(options.workers, options.max_tasks_per_worker, options.prefetch_window),
      metrics_(started_),
      view_(workers_) {}

void Scheduler::Notify(Notifications& notifications) {
  for (const std::shared_ptr<SessionListener>& listener : notifications) {
    listener->OnSessionEvents();
  }
  notifications.clear();
}

absl::StatusOr<std::vector<v1::TaskRejection>> Scheduler::Submit(
    SessionId id, google::protobuf::RepeatedPtrField<v1::TaskSpec>& tasks) {
  std::vector<v1::TaskRejection> rejections;
  absl::MutexLock lock(&mu_);
  Session* const found = sessions_.FindOpen(id);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("no open session ", id));
  Session& session = *found;
  const absl::Time now = clock_();
  for (v1::TaskSpec& spec : tasks) {
    session.last_task_id = std::max(session.last_task_id, spec.task_id());
    // A client that resumed re-sends the tasks it is not sure arrived; the session has these.
    if (session.resumed && session.Holds(spec.task_id())) continue;
    const uint64_t reserve_bytes =
        outcomes_.ReserveBytes(spec.options().broadcast() || spec.options().gang_size() > 1);
    const absl::StatusOr<const FunctionTraits*> traits =
        intake_.Validate(pool_state_, pool_reason_, session, spec, reserve_bytes);
    if (!traits.ok()) {
      // The object was handed over with the task: a rejected task's is the service's to remove.
      if (intake_.HandsOverSharedPayload(session, spec)) {
        outcomes_.ReleaseSharedObject(spec.shared_payload().name());
      }
      metrics_.Rejected(traits.status().code());
      v1::TaskRejection& rejection = rejections.emplace_back();
      rejection.set_task_id(spec.task_id());
      rejection.set_code(static_cast<int>(traits.status().code()));
      rejection.set_message(std::string(traits.status().message()));
      continue;
    }
    const TaskKey key = next_task_key_++;
    Task& task = tasks_[key];
    task.session = id;
    if (*traits != nullptr) {
      task.metrics = (*traits)->metrics;
      metrics_.Accepted(*task.metrics, PayloadBytes(spec));
    } else {
      // Booting: PoolReady() counts it under its function, if the pool has it.
      task.payload_bytes = PayloadBytes(spec);
    }
    task.client_id = spec.task_id();
    task.broadcast = spec.options().broadcast();
    task.gang_size = spec.options().gang_size();
    task.gang_function = *traits != nullptr && (*traits)->gang;
    task.max_retries = spec.options().max_retries();
    task.capped = session.max_running > 0 && !task.broadcast;
    task.reserved_bytes = reserve_bytes;
    session.reserved_bytes += task.reserved_bytes;
    task.enqueued = now;
    TaskIntake::ToFrame(key, session, spec, task.frame);
    if (task.frame.has_shared_payload()) task.shared_input = task.frame.shared_payload().name();
    if (pool_state_ == v1::POOL_STATE_BOOTING) task.payload_type = spec.payload_type();
    if (const uint64_t timeout_ms = spec.options().queue_timeout_ms(); timeout_ms > 0) {
      // A deadline that never comes would never leave the heap; it is no deadline at all.
      const absl::Time deadline = now + QueueTimeout(timeout_ms);
      if (deadline != absl::InfiniteFuture()) queue_deadlines_.emplace(deadline, key);
    }
    session.live.emplace(spec.task_id(), key);
    session.queue.push_back(key);
    ++session.queued;
    ++queued_count_;
    EnterReadyRingLocked(id, session);
  }
  return rejections;
}

absl::StatusOr<std::vector<v1::CancelResult>> Scheduler::Cancel(SessionId id,
                                                                absl::Span<const uint64_t> task_ids,
                                                                bool interrupt_running,
                                                                bool force) {
  std::vector<v1::CancelResult> results;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const Session* session = sessions_.FindOpen(id);
    if (session == nullptr) return absl::NotFoundError(absl::StrCat("no open session ", id));
    for (const uint64_t task_id : task_ids) {
      v1::CancelResult& result = results.emplace_back();
      result.set_task_id(task_id);
      const auto live = session->live.find(task_id);
      if (live == session->live.end()) continue;
      Task& task = tasks_.at(live->second);
      if (!task.running) {
        EndQueuedLocked(live->second, v1::TASK_STATE_CANCELLED, absl::StatusCode::kCancelled,
                        "cancelled by the client");
        result.set_cancelled(true);
      } else if (interrupt_running || force) {
        InterruptLocked(live->second, task, force);
        result.set_interrupted(true);
      }
    }
    MaybeNotifyLocked(id, notifications);
  }
  Notify(notifications);
  return results;
}

void Scheduler::FailRunning(absl::string_view reason) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    // The workers stay busy: they are still running their tasks, and are about to be stopped.
    for (int w = 0; w < workers_; ++w) {
      for (const TaskKey key : picker_.worker(w).tasks) {
        // A group task ends once, with its first member.
        const auto task = tasks_.find(key);
        if (task == tasks_.end()) continue;
        const SessionId id = task->second.session;
        if (task->second.capped) ReleaseCapLocked(id, task->second.running_members);
        v1::TaskOutcome outcome =
            OutcomeBuilder::Failure(v1::TASK_STATE_FAILED, absl::StatusCode::kCancelled, reason);
        OutcomeBuilder::SetWorkers(task->second.members, task->second.group(), outcome);
        outcome.set_queue_us(MicrosBetween(task->second.enqueued, task->second.started));
        EndTaskLocked(key, std::move(outcome));
        MaybeNotifyLocked(id, notifications);
      }
    }
    picker_.ForgetAllTasks();
  }
  Notify(notifications);
}

Scheduler::TaskKey Scheduler::PeekQueuedLocked(Session& session) {
  while (!session.queue.empty()) {
    const TaskKey key = session.queue.front();
    // Keys of tasks cancelled or expired while queued are skipped here.
    const auto task = tasks_.find(key);
    if (task != tasks_.end() && !task->second.running) return key;
    session.queue.pop_front();
  }
  return 0;
}

size_t Scheduler::WorkersNeeded(const Task& task) const {
  if (task.broadcast) return static_cast<size_t>(workers_);
  if (task.gang_function) return std::max<size_t>(task.gang_size, 1);
  return 1;
}

void Scheduler::StartLocked(TaskKey key, Task& task, absl::Time now, DispatchWork& work) {
  const size_t count = task.members.size();
  task.running = true;
  task.started = now;
  ++task.attempts;
  task.running_members = static_cast<int>(count);
  const bool behind = picker_.Assign(task.members, key, task.group(), now);
  if (!task.group()) {
    const Session& session = sessions_.at(task.session);
    if (session.shared.enabled && session.shared.result_min_bytes > 0) {
      task.frame.set_shared_result_prefix(intake_.shared_memory_prefix());
      task.frame.set_shared_result_min_bytes(session.shared.result_min_bytes);
    }
    // Behind another in the worker's backlog it may go back to the queue unstarted if the
    // worker is lost (WorkerLost): keep the frame until it is the worker's first.
    if (task.attempts <= task.max_retries || behind) {
      // It may run again if its runner dies: keep the frame.
      work.assignments.push_back(Assignment{task.members.front(), task.frame});
    } else {
      work.assignments.push_back(Assignment{task.members.front(), std::move(task.frame)});
      task.frame.Clear();
    }
    return;
  }
  task.results.resize(count);
  // Only a gang function makes a communicator; a plain function broadcast runs alone on each.
  if (task.gang_function) {
    task.frame.mutable_gang()->Add(task.members.begin(), task.members.end());
  }
  for (size_t i = 0; i < count; ++i) {
    Assignment& assignment = work.assignments.emplace_back();
    assignment.worker = task.members[i];
    if (i + 1 < count) {
      assignment.frame = task.frame;
    } else {
      assignment.frame = std::move(task.frame);
    }
  }
  task.frame.Clear();
}

bool Scheduler::HasWorkLocked() const {
  // While a group task waits for its workers nothing else may start, so fewer idle workers than
  // it needs are no work.
  const bool room = held_key_ != 0 ? picker_.HasIdle(held_need_, held_one_job_) : picker_.HasRoom();
  // The ring, not queued_count_: tasks of sessions at their cap are no work until one leaves.
  return stopping_ || wake_ || !interrupts_.empty() || (!ready_ring_.empty() && room) ||
         sessions_.NextGraceDeadline() < grace_wake_ ||
         (!outcome_reports_.empty() && outcome_reports_.back().first < outcome_wake_);
}

void Scheduler::InterruptLocked(TaskKey key, Task& task, bool force) {
  // A kill may follow a flag, never the other way round.
  if (!task.running || task.forced || (task.interrupted && !force)) return;
  task.interrupted = true;
  task.forced = force;
  // Members that have already reported are done with it.
  for (const int member : task.members) {
    if (picker_.Holds(member, key)) interrupts_.push_back(Interrupt{member, key, force});
  }
}

void Scheduler::RequeueLocked(TaskKey key, Task& task) {
  task.running = false;
  task.members.clear();
  task.running_members = 0;
  Session& session = sessions_.at(task.session);
  // Ahead of the session's other tasks: it was accepted before them. Its queue timeout does not
  // apply again; that bounded the wait for a first start.
  session.queue.push_front(key);
  ++session.queued;
  ++queued_count_;
  EnterReadyRingLocked(task.session, session);
}

void Scheduler::EnterReadyRingLocked(SessionId id, Session& session) {
  if (session.in_ready_ring || session.queued == 0) return;
  // A session at its cap comes back when one of its tasks leaves its worker (ReleaseCapLocked).
  if (session.max_running > 0 && session.on_workers >= session.max_running) return;
  session.in_ready_ring = true;
  ready_ring_.push_back(id);
}

void Scheduler::ReleaseCapLocked(SessionId id, size_t members) {
  Session& session = sessions_.at(id);
  session.on_workers -= members;
  EnterReadyRingLocked(id, session);
}

DispatchWork Scheduler::AwaitWork(absl::Duration timeout) {
  DispatchWork work;
  Notifications notifications;
  {
    mu_.Lock();
    // The earliest grace deadline bounds the wait, so that a detached session expires even while
    // the pool is idle; a later Detach with an earlier deadline wakes the wait (HasWorkLocked).
    absl::Duration wait = timeout;
    grace_wake_ = sessions_.NextGraceDeadline();
    absl::Time wake_at = grace_wake_;
    // So does the first held start's due time: starts are held only here, by this thread, so no
    // later one is due sooner. Reports of starts that went out with other events since must not
    // cut the wait short.
    while (!start_reports_.empty() && !StartsHeldLocked(start_reports_.front())) {
      start_reports_.pop_front();
    }
    if (!start_reports_.empty()) wake_at = std::min(wake_at, start_reports_.front().first);
    while (!outcome_reports_.empty() && !OutcomesHeldLocked(outcome_reports_.front())) {
      outcome_reports_.pop_front();
    }
    // Outcomes held meanwhile by another thread (a cancel's, say) come due later than this one,
    // or, if none is held now, wake the wait (HasWorkLocked).
    outcome_wake_ =
        outcome_reports_.empty() ? absl::InfiniteFuture() : outcome_reports_.front().first;
    wake_at = std::min(wake_at, outcome_wake_);
    if (wake_at != absl::InfiniteFuture()) {
      wait = std::min(wait, std::max(wake_at - clock_(), absl::ZeroDuration()));
    }
    const absl::Condition has_work(this, &Scheduler::HasWorkLocked);
    if (wait == absl::InfiniteDuration()) {
      mu_.Await(has_work);
    } else if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(has_work, wait);
    }
    // A zero wait is a poll: Mutex::AwaitWithTimeout would block on a futex, a system call, even
    // to time out at once.
    grace_wake_ = absl::InfiniteFuture();
    outcome_wake_ = absl::InfiniteFuture();
    wake_ = false;
    const absl::Time now = clock_();
    ReportDueStartsLocked(now, notifications);
    ReportDueOutcomesLocked(now, notifications);
    ExpireQueueTimeoutsLocked(now, notifications);
    ExpireGracePeriodsLocked(now);
    while (picker_.HasRoom() && !ready_ring_.empty()) {
      const SessionId id = ready_ring_.front();
      ready_ring_.pop_front();
      Session* const found = sessions_.Find(id);
      if (found == nullptr) continue;
      Session& session = *found;
      const TaskKey key = PeekQueuedLocked(session);
      if (key == 0) {
        session.in_ready_ring = false;
        continue;
      }
      Task& task = tasks_.at(key);
      const size_t needed = WorkersNeeded(task);
      if (task.capped && session.on_workers + needed > session.max_running) {
        // At its cap: it waits out of the ring, so that it holds no worker back from the
        // sessions behind it, until one of its tasks leaves its worker (ReleaseCapLocked). Some
        // does: a gang never needs more than the cap (TaskIntake), so, so it has tasks out.
        session.in_ready_ring = false;
        continue;
      }
      if (!picker_.Pick(needed, task.group(), task.gang_function, now, task.members)) {
        // The session keeps its turn, and the idle workers stay idle, until enough are.
        ready_ring_.push_front(id);
        if (task.group()) {
          held_key_ = key;
          held_need_ = needed;
          held_one_job_ = task.gang_function;
        }
        break;
      }
      if (key == held_key_) held_key_ = 0;
      session.queue.pop_front();
      --session.queued;
      --queued_count_;
      // The backlog is (nearly) gone: the outcomes it held go now, not at their due time.
      if (session.OutcomesHeld() && session.queued < backlog_tasks_) {
        session.outcomes_due_at = absl::InfiniteFuture();
        MaybeNotifyLocked(id, notifications);
      }
      if (task.capped) session.on_workers += needed;
      // Its next turn comes after the other sessions' turns, or once it is below its cap again.
      session.in_ready_ring = false;
      if (session.queued == 0) session.queue.clear();
      EnterReadyRingLocked(id, session);
      StartLocked(key, task, now, work);
      if (!session.abandoned) HoldStartLocked(id, session, task.client_id, now, notifications);
    }
    work.interrupts.swap(interrupts_);
    work.stopping = stopping_;
    mu_.Unlock();
  }
  Notify(notifications);
  return work;
}

void Scheduler::Complete(int worker, wire::ResultFrame result) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    CompleteLocked(worker, std::move(result), clock_(), notifications);
  }
  Notify(notifications);
}

void Scheduler::Complete(absl::Span<WorkerResult> results) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_();
    for (WorkerResult& result : results) {
      CompleteLocked(result.worker, std::move(result.result), now, notifications);
    }
  }
  Notify(notifications);
}

bool Scheduler::ReleaseFromWorkerLocked(int worker, TaskKey key, absl::Time now) {
  TaskKey next = 0;
  if (!picker_.Release(worker, key, now, next)) return false;
  if (next != 0) {
    // Running now: it no longer needs the copy of its frame it kept while it waited (see
    // StartLocked), unless it may run again.
    Task& running = tasks_.at(next);
    if (!running.group() && running.attempts > running.max_retries) running.frame.Clear();
  }
  const Task& task = tasks_.at(key);
  if (task.capped) ReleaseCapLocked(task.session, 1);
  return true;
}

void Scheduler::CompleteLocked(int worker, wire::ResultFrame result, absl::Time now,
                               Notifications& notifications) {
  if (worker < 0 || worker >= workers_) return;
  const TaskKey key = result.task_key();
  if (!ReleaseFromWorkerLocked(worker, key, now)) return;
  view_.Reported(worker, result.has_error(), result.runner_pid());
  Task& task = tasks_.at(key);
  if (task.group() || task.interrupted) {
    // An interrupted task's time says nothing of how long such tasks take.
    picker_.Reopen(worker);
  } else {
    picker_.Learn(worker, result.run_us());
  }
  const bool retry = result.runner_lost() && !task.group() && task.attempts <= task.max_retries &&
                     !task.interrupted && pool_state_ != v1::POOL_STATE_DRAINING;
  if (result.runner_lost()) {
    Log(LogLevel::kWarning, "worker ", worker, " lost the process running task ", task.client_id,
        " of session ", task.session, " (attempt ", task.attempts, "): ", result.error().message(),
        retry ? "; the task runs again" : "");
  }
  if (retry) {
    RequeueLocked(key, task);
    return;
  }
  v1::TaskOutcome outcome;
  if (task.group()) {
    const auto member = std::find(task.members.begin(), task.members.end(), worker);
    task.results[static_cast<size_t>(member - task.members.begin())] = std::move(result);
    if (--task.running_members > 0) return;
    outcome =
        OutcomeBuilder::FromGroup(task.results, task.members, task.broadcast, task.interrupted);
  } else {
    const bool runner_lost = result.runner_lost();
    OutcomeBuilder::FromResult(result, task.interrupted, outcome);
    if (runner_lost && task.attempts > 1) {
      outcome.mutable_error()->set_message(absl::StrCat(
          "failed on all ", task.attempts, " attempts; the last: ", outcome.error().message()));
    }
  }
  outcome.set_attempts(task.attempts);
  OutcomeBuilder::SetWorkers(task.members, task.group(), outcome);
  outcome.set_queue_us(MicrosBetween(task.enqueued, task.started));
  const SessionId id = task.session;
  EndTaskLocked(key, std::move(outcome));
  MaybeNotifyLocked(id, notifications);
}

std::vector<int> Scheduler::WorkerLost(int worker, absl::string_view why,
                                       std::optional<std::string> degraded) {
  std::vector<int> survivors;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (degraded.has_value()) degraded_ = *std::move(degraded);
    if (worker < 0 || worker >= workers_) return survivors;
    if (!picker_.Lose(worker)) return survivors;
    const std::deque<TaskKey>& tasks = picker_.worker(worker).tasks;
    const std::vector<TaskKey> held(tasks.begin(), tasks.end());
    const absl::Time now = clock_();
    // Last first: each goes back to the front of its session's queue, so their order holds; and
    // the first it held stays first until the rest are off (see ReleaseFromWorkerLocked).
    for (size_t i = held.size(); i-- > 0;) {
      const TaskKey key = held[i];
      if (i > 0) {
        // Waiting in its backlog: it never started (a worker runs its tasks in order), so its
        // attempt is given back.
        Task& waiting = tasks_.at(key);
        if (!waiting.interrupted && pool_state_ != v1::POOL_STATE_DRAINING) {
          ReleaseFromWorkerLocked(worker, key, now);
          picker_.Reopen(worker);
          --waiting.attempts;
          RequeueLocked(key, waiting);
          continue;
        }
      }
      wire::ResultFrame lost;
      lost.set_task_key(key);
      lost.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kAborted));
      lost.mutable_error()->set_message(std::string(why));
      // A gang's first loss is what its outcome tells (OutcomeBuilder::FromGroup); the members lost
      // after it (killed because of it, say) only failed with it.
      const auto task = tasks_.find(key);
      lost.set_runner_lost(
          task == tasks_.end() ||
          std::none_of(task->second.results.begin(), task->second.results.end(),
                       [](const wire::ResultFrame& result) { return result.runner_lost(); }));
      CompleteLocked(worker, std::move(lost), now, notifications);
      // A gang still running on its other members: release them.
      const auto running = tasks_.find(key);
      if (running == tasks_.end() || !running->second.gang_function) continue;
      for (const int member : running->second.members) {
        if (picker_.Holds(member, key)) survivors.push_back(member);
      }
      InterruptLocked(key, running->second, /*force=*/false);
    }
    // CompleteLocked made it idle once it held nothing.
    picker_.RemoveIdle(worker);
  }
  Notify(notifications);
  return survivors;
}

void Scheduler::Progress(int worker, const wire::ProgressFrame& progress) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    if (worker < 0 || worker >= workers_) return;
    const TaskKey key = progress.task_key();
    if (!picker_.Holds(worker, key)) return;
    const Task& task = tasks_.at(key);
    Session& session = sessions_.at(task.session);
    if (session.abandoned) return;
    v1::TaskProgress& latest = session.progress[task.client_id];
    latest.set_task_id(task.client_id);
    latest.set_fraction(progress.fraction());
    latest.set_message(progress.message());
    MaybeNotifyLocked(task.session, notifications);
  }
  Notify(notifications);
}

void Scheduler::EndTaskLocked(TaskKey key, v1::TaskOutcome outcome) {
  const auto task_it = tasks_.find(key);
  const SessionId id = task_it->second.session;
  const uint64_t client_id = task_it->second.client_id;
  TaskMetrics::Function* function_metrics = task_it->second.metrics;
  if (function_metrics == nullptr) {
    // Submitted while booting and ended before the pool was ready: its function never became
    // known.
    function_metrics = &metrics_.other();
    metrics_.Accepted(*function_metrics, task_it->second.payload_bytes);
  }
  if (!task_it->second.shared_input.empty()) {
    outcomes_.ReleaseSharedObject(task_it->second.shared_input);
  }
  Session& session = sessions_.at(id);
  // The outcome takes the place of the task's reservation; a failure made below fits in it.
  session.reserved_bytes -= task_it->second.reserved_bytes;
  tasks_.erase(task_it);
  size_t size = 0;
  if (session.abandoned) {
    outcomes_.ReleaseSharedResult(outcome);
  } else {
    outcome.set_task_id(client_id);
    size = outcomes_.FitToSession(session.max_outcome_bytes, session.unread_bytes,
                                  session.reserved_bytes, outcome);
  }

  const absl::Time now = clock_();
  metrics_.Ended(*function_metrics, outcome, now);
  const int64_t second = absl::ToUnixSeconds(now);
  view_.Ended(second);
  session.tally.Ended(outcome.state(), second);
  if (outcome.state() == v1::TASK_STATE_FAILED) {
    view_.Failed(now, id, session.client_name, client_id, function_metrics->name, outcome);
  }
  session.live.erase(client_id);
  session.progress.erase(client_id);
  if (session.abandoned) return;
  session.Hold(client_id, size, std::move(outcome));
  if (session.outbox.size() >= backlog_outcome_batch_) {
    // Enough for an update of its own: the caller's MaybeNotifyLocked sends them.
    session.outcomes_due_at = absl::InfiniteFuture();
  } else if (session.outbox.size() == 1) {
    MaybeHoldOutcomesLocked(id, session, now);
  }
}

void Scheduler::EndQueuedLocked(TaskKey key, v1::TaskState state, absl::StatusCode code,
                                absl::string_view why) {
  const Task& task = tasks_.at(key);
  Session& session = sessions_.at(task.session);
  --session.queued;
  --queued_count_;
  // A group task that was waiting for its workers no longer holds the others back.
  if (key == held_key_) held_key_ = 0;
  v1::TaskOutcome outcome = OutcomeBuilder::Failure(state, code, why);
  outcome.set_worker(-1);
  outcome.set_queue_us(MicrosBetween(task.enqueued, clock_()));
  // The key stays in the session's queue and the deadline heap; both skip it once it is gone.
  EndTaskLocked(key, std::move(outcome));
}

void Scheduler::CancelAllQueuedLocked(Session& session, absl::string_view why) {
  for (const TaskKey key : session.queue) {
    const auto task = tasks_.find(key);
    if (task != tasks_.end() && !task->second.running) {
      EndQueuedLocked(key, v1::TASK_STATE_CANCELLED, absl::StatusCode::kCancelled, why);
    }
  }
  session.queue.clear();
}

void Scheduler::MaybeNotifyLocked(SessionId id, Notifications& notifications) {
  Session* session = sessions_.Find(id);
  if (session == nullptr) return;
  if (session->abandoned) {
    sessions_.EraseIfAbandonedAndDone(id);
    return;
  }
  if (!session->listener_told && session->listener && session->HasEvents()) {
    session->listener_told = true;
    notifications.push_back(session->listener);
  }
}

void Scheduler::HoldStartLocked(SessionId id, Session& session, uint64_t client_id, absl::Time now,
                                Notifications& notifications) {
  if (session.started.empty()) {
    session.starts_due_at = now + start_report_delay_;
    session.starts_due = start_report_delay_ == absl::ZeroDuration();
    if (!session.starts_due) start_reports_.emplace_back(session.starts_due_at, id);
  }
  session.started.push_back(client_id);
  MaybeNotifyLocked(id, notifications);
}

void Scheduler::ReportDueStartsLocked(absl::Time now, Notifications& notifications) {
  while (!start_reports_.empty() && start_reports_.front().first <= now) {
    const HeldReport report = start_reports_.front();
    start_reports_.pop_front();
    if (!StartsHeldLocked(report)) continue;
    sessions_.Find(report.second)->starts_due = true;
    MaybeNotifyLocked(report.second, notifications);
  }
}

void Scheduler::MaybeHoldOutcomesLocked(SessionId id, Session& session, absl::Time now) {
  // A listener already told collects it anyway.
  if (backlog_outcome_delay_ == absl::ZeroDuration() || session.listener_told ||
      session.queued < backlog_tasks_) {
    return;
  }
  session.outcomes_due_at = now + backlog_outcome_delay_;
  outcome_reports_.emplace_back(session.outcomes_due_at, id);
}

bool Scheduler::OutcomesHeldLocked(const HeldReport& report) const {
  const Session* const session = sessions_.Find(report.second);
  return session != nullptr && session->outcomes_due_at == report.first && !session->listener_told;
}

void Scheduler::ReportDueOutcomesLocked(absl::Time now, Notifications& notifications) {
  while (!outcome_reports_.empty() && outcome_reports_.front().first <= now) {
    const HeldReport report = outcome_reports_.front();
    outcome_reports_.pop_front();
    if (!OutcomesHeldLocked(report)) continue;
    sessions_.Find(report.second)->outcomes_due_at = absl::InfiniteFuture();
    MaybeNotifyLocked(report.second, notifications);
  }
}

bool Scheduler::StartsHeldLocked(const HeldReport& report) const {
  const Session* const session = sessions_.Find(report.second);
  // Unless its starts went out with other events since (and newer ones are held), or go with
  // events its listener was told of (a timed wait for nothing costs a sequential client's round
  // trip about a fifth).
  return session != nullptr && !session->started.empty() &&
         session->starts_due_at == report.first && !session->listener_told;
}

void Scheduler::ExpireQueueTimeoutsLocked(absl::Time now, Notifications& notifications) {
  while (!queue_deadlines_.empty() && queue_deadlines_.top().first <= now) {
    const TaskKey key = queue_deadlines_.top().second;
    queue_deadlines_.pop();
    const auto task = tasks_.find(key);
    if (task == tasks_.end() || task->second.running) continue;
    const SessionId id = task->second.session;
    EndQueuedLocked(key, v1::TASK_STATE_FAILED, absl::StatusCode::kDeadlineExceeded,
                    "the task's queue timeout passed before a worker was free");
    MaybeNotifyLocked(id, notifications);
  }
}

}  // namespace mpigate::server
