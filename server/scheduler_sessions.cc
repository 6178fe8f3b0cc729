// The Scheduler's session entry points for the gRPC adapter: opening, detaching, resuming,
// abandoning and closing sessions, and handing their events over. The sessions themselves are
// SessionTable's; what is here ties them to their tasks.
#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "server/scheduler.h"

namespace mpigate::server {

absl::StatusOr<SessionId> Scheduler::OpenSession(
    std::string client_name, std::shared_ptr<SessionListener> listener,
    uint64_t client_max_message_bytes, SharedMemoryUse shared,
    const google::protobuf::Map<std::string, std::string>& env, uint32_t max_running_tasks) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<google::protobuf::RepeatedPtrField<std::string>> variables =
      intake_.SessionEnv(env);
  if (!variables.ok()) return variables.status();
  if (pool_state_ == v1::POOL_STATE_DRAINING) {
    return absl::UnavailableError(absl::StrCat("the service is draining: ", pool_reason_));
  }
  if (max_sessions_ > 0) {
    const SessionTable::Census census = sessions_.Count();
    if (census.open >= max_sessions_) {
      // The detached session that has waited longest for its client makes room for a client that
      // is here, rather than sessions nobody may resume locking every new client out for a whole
      // grace period.
      const SessionId evicted = census.longest_detached;
      if (evicted == 0) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the service holds its maximum of ", max_sessions_,
            " open sessions (--max_sessions), each with a client attached; retry once one has "
            "closed, or raise the limit"));
      }
      Session& session = sessions_.at(evicted);
      const size_t live = session.live.size();
      AbandonLocked(session, absl::StrCat("cancelled: the session was detached and ended to make "
                                          "room for a new one (--max_sessions ",
                                          max_sessions_, ")"));
      Log(LogLevel::kInfo, "session ", evicted,
          " abandoned while detached to make room for a new session (--max_sessions ",
          max_sessions_, "); its ", live, " unfinished tasks cancelled or interrupted");
      // A detached session has no listener to tell.
      sessions_.EraseIfAbandonedAndDone(evicted);
    }
  }
  absl::StatusOr<std::string> token = token_source_();
  if (!token.ok()) return token.status();
  const absl::StatusOr<SessionId> id = sessions_.Add(*std::move(token));
  if (!id.ok()) return id.status();
  Session& session = sessions_.at(*id);
  session.client_name = std::move(client_name);
  session.opened = clock_();
  session.listener = std::move(listener);
  session.max_outcome_bytes = outcomes_.MaxOutcomeBytes(client_max_message_bytes);
  if (!intake_.shared_memory_prefix().empty()) session.shared = shared;
  session.env = *std::move(variables);
  session.max_running = max_running_tasks;
  return *id;
}

absl::StatusOr<std::string> Scheduler::ResumeToken(SessionId id) const {
  absl::MutexLock lock(&mu_);
  const Session* session = sessions_.FindOpen(id);
  if (session == nullptr) return absl::NotFoundError(absl::StrCat("no open session ", id));
  return session->resume_token;
}

absl::Status Scheduler::Shutdown(SessionId id, bool cancel_pending) {
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    Session* session = sessions_.FindOpen(id);
    if (session == nullptr) return absl::NotFoundError(absl::StrCat("no open session ", id));
    session->shut_down = true;
    if (cancel_pending) CancelAllQueuedLocked(*session, "cancelled by the session's shutdown");
    MaybeNotifyLocked(id, notifications);
  }
  Notify(notifications);
  return absl::OkStatus();
}

void Scheduler::Abandon(SessionId id) {
  // Declared before the lock so that it is destroyed after the unlock: dropping what may be the
  // last reference to the listener must not run its destructor under the scheduler's lock.
  std::shared_ptr<SessionListener> released_listener;
  absl::MutexLock lock(&mu_);
  Session* session = sessions_.Find(id);
  if (session == nullptr) return;
  released_listener = std::move(session->listener);
  AbandonLocked(*session, "cancelled: the client went away");
  // It has no listener left to tell.
  sessions_.EraseIfAbandonedAndDone(id);
}

void Scheduler::AbandonLocked(Session& session, absl::string_view why) {
  session.abandoned = true;
  session.detached = false;
  sessions_.DropToken(session);
  CancelAllQueuedLocked(session, why);
  // Nobody wants the results of the rest any more. Newest first: a worker runs its backlog in
  // the order it was handed, so the tasks behind its running one are dropped before that one's
  // flag is set, and none of them starts in its place meanwhile.
  std::vector<TaskKey> live;
  live.reserve(session.live.size());
  for (const auto& [client_id, key] : session.live) live.push_back(key);
  std::sort(live.begin(), live.end(), std::greater<TaskKey>());
  for (const TaskKey key : live) InterruptLocked(key, tasks_.at(key), /*force=*/false);
  session.DropOutcomes([this](v1::TaskOutcome& outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outcomes_.ReleaseSharedResult(outcome);
  });
}

void Scheduler::Detach(SessionId id) {
  // As in Abandon: the listener's last reference is dropped after the unlock.
  std::shared_ptr<SessionListener> released_listener;
  absl::MutexLock lock(&mu_);
  Session* session = sessions_.FindOpen(id);
  if (session == nullptr || session->detached) return;
  released_listener = std::move(session->listener);
  session->listener_told = false;
  if (resume_grace_ == absl::ZeroDuration()) {
    AbandonLocked(*session, "cancelled: the client went away");
    sessions_.EraseIfAbandonedAndDone(id);
    return;
  }
  // Wakes AwaitWork() if this deadline is earlier than the one it waits for (HasWorkLocked).
  sessions_.StartGrace(id, *session, clock_() + resume_grace_);
}

absl::StatusOr<ResumedSession> Scheduler::Resume(absl::string_view token,
                                                 std::shared_ptr<SessionListener> listener,
                                                 absl::Span<const uint64_t> acked_task_ids,
                                                 uint64_t client_max_message_bytes,
                                                 SharedMemoryUse shared) {
  ResumedSession resumed;
  Notifications notifications;
  {
    absl::MutexLock lock(&mu_);
    resumed.id = sessions_.FindByToken(token);
    if (resumed.id == 0) {
      return absl::NotFoundError(
          "no session waits to be resumed with this token: it closed, its grace period passed, "
          "or it never existed");
    }
    Session& session = sessions_.at(resumed.id);
    if (!session.detached) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", resumed.id,
                       " is still held by another stream; retry once that stream has ended"));
    }
    session.Ack(acked_task_ids);
    session.detached = false;
    session.resumed = true;
    session.listener = std::move(listener);
    session.listener_told = false;
    // Outcomes written to the old stream go again, before those it never collected.
    session.ResendRetained();
    // The new client may accept less than the old one did.
    session.max_outcome_bytes = outcomes_.MaxOutcomeBytes(client_max_message_bytes);
    if (!intake_.shared_memory_prefix().empty()) session.shared = shared;
    for (v1::TaskOutcome& outcome : session.outbox) {
      const auto held = session.unread.find(outcome.task_id());
      // Not held: acknowledged after it was written to the old stream, and dropped once collected.
      if (held == session.unread.end()) continue;
      if (outcomes_.FitToStream(session.max_outcome_bytes, outcome.ByteSizeLong(), outcome)) {
        session.unread_bytes -= held->second.bytes;
        held->second.bytes = OutcomeBuilder::HeldBytes(outcome);
        session.unread_bytes += held->second.bytes;
      }
    }
    resumed.last_task_id = session.last_task_id;
    resumed.pending_task_ids = session.PendingTaskIds();
    MaybeNotifyLocked(resumed.id, notifications);
  }
  Notify(notifications);
  return resumed;
}

absl::Status Scheduler::Ack(SessionId id, absl::Span<const uint64_t> task_ids) {
  absl::MutexLock lock(&mu_);
  Session* session = sessions_.FindOpen(id);
  if (session == nullptr) return absl::NotFoundError(absl::StrCat("no open session ", id));
  session->Ack(task_ids);
  return absl::OkStatus();
}

void Scheduler::Retain(SessionId id,
                       google::protobuf::RepeatedPtrField<v1::TaskOutcome>& outcomes) {
  absl::MutexLock lock(&mu_);
  Session* session = sessions_.FindOpen(id);
  if (session == nullptr) {
    // Nobody will read them now.
    for (v1::TaskOutcome& outcome : outcomes) outcomes_.ReleaseSharedResult(outcome);
    return;
  }
  session->Retain(outcomes);
}

void Scheduler::ExpireGracePeriodsLocked(absl::Time now) {
  // The check inline: AwaitWork() asks on every call, and almost always nothing has expired.
  while (sessions_.NextGraceDeadline() <= now) {
    const SessionId id = sessions_.PopExpired(now);
    if (id == 0) break;
    Session& session = sessions_.at(id);
    const size_t live = session.live.size();
    AbandonLocked(session,
                  absl::StrCat("cancelled: the client did not resume the session within its grace "
                               "period of ",
                               absl::FormatDuration(resume_grace_)));
    Log(LogLevel::kInfo, "session ", id, " abandoned: no client resumed it within ",
        absl::FormatDuration(resume_grace_), "; its ", live,
        " unfinished tasks cancelled or interrupted");
    // A detached session has no listener to tell.
    sessions_.EraseIfAbandonedAndDone(id);
  }
}

SessionEvents Scheduler::TakeEvents(SessionId id) {
  SessionEvents events;
  absl::MutexLock lock(&mu_);
  Session* session = sessions_.FindOpen(id);
  if (session == nullptr) return events;
  if (session->pool_changed) {
    session->pool_changed = false;
    events.pool = PoolStateLocked();
  }
  session->Collect(events);
  return events;
}

void Scheduler::ForgetClosed(SessionId id) {
  absl::MutexLock lock(&mu_);
  const Session* session = sessions_.Find(id);
  if (session == nullptr || !session->shut_down || !session->live.empty()) return;
  sessions_.Erase(id);
}

}  // namespace mpigate::server
