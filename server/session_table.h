// SessionTable: the gateway's sessions, by id and by resume token, and the grace periods of those
// detached from their stream. A Session holds what its client has yet to collect (its outbox,
// progress, started ids) and every outcome it has not acknowledged, so that a stream that breaks
// can be resumed by another without losing one; and what those outcomes cost, for the unread
// bound. Which task runs where is not its business: it holds its tasks' keys for the scheduler.
//
// Thread-safety: none of its own; the scheduler owns one and calls it under its lock.
#ifndef MPIGATE_SERVER_SESSION_TABLE_H_
#define MPIGATE_SERVER_SESSION_TABLE_H_

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

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "mpigate/v1/gateway.pb.h"
#include "mpigate/v1/task.pb.h"
#include "server/pool_view.h"

namespace mpigate::server {

using SessionId = uint64_t;

// Told when a session has events to collect with Scheduler::TakeEvents(). Called at most once
// between two collections, from whichever thread produced the event, without the scheduler's lock.
class SessionListener {
 public:
  virtual ~SessionListener() = default;
  virtual void OnSessionEvents() = 0;
};

// What a session's listener collects (Scheduler::TakeEvents).
struct SessionEvents {
  // Client ids of tasks handed to a worker since the last collection, in that order.
  std::vector<uint64_t> started;
  // Outcomes in the order their tasks ended.
  std::vector<v1::TaskOutcome> outcomes;
  // The latest progress of tasks still running, for those that reported since the last
  // collection.
  std::vector<v1::TaskProgress> progress;
  // Set if the pool changed state since the last collection: its state now.
  std::optional<v1::PoolStateChange> pool;
  // The session was shut down and every accepted task has its outcome (all in `outcomes` or
  // collected before): no more events. The session lives on until Scheduler::ForgetClosed(), so
  // that a stream that breaks before the client has read `closed` can still be resumed.
  bool closed = false;
};

// How a session uses shared memory (OpenSession.shared_memory_domain and
// .shared_result_min_bytes, as the gRPC adapter judged them).
struct SharedMemoryUse {
  // The client shares the gateway's host and user: it may hand over inputs in shared memory.
  bool enabled = false;
  // With `enabled`: results of at least this many bytes come back in shared memory; 0: never.
  uint64_t result_min_bytes = 0;
};

// 16 bytes from the kernel's CSPRNG (getrandom): a resume token nobody can guess.
absl::StatusOr<std::string> RandomResumeToken();

// An outcome a session holds for its client.
struct HeldOutcome {
  // What holding it costs (OutcomeBuilder::HeldBytes).
  uint64_t bytes = 0;
  // Its place among the session's outcomes in the order they ended (Session::ended).
  uint64_t index = 0;
};

struct Session {
  using TaskKey = uint64_t;

  std::string client_name;
  absl::Time opened;
  // Its tasks ended, for Status().
  SessionTally tally;
  std::shared_ptr<SessionListener> listener;
  // Task keys in submission order; may hold keys of tasks ended since (skipped on dispatch).
  std::deque<TaskKey> queue;
  // Tasks of this session that have not ended, by the client's id.
  absl::flat_hash_map<uint64_t, TaskKey> live;
  size_t queued = 0;
  std::vector<v1::TaskOutcome> outbox;
  // The latest progress of running tasks, by client id, since the listener last collected.
  absl::flat_hash_map<uint64_t, v1::TaskProgress> progress;
  // Client ids of tasks dispatched since the listener last collected.
  std::vector<uint64_t> started;
  // When the starts in `started` are to be reported (Scheduler's Options::start_report_delay);
  // once they are due the listener is told of them. Until then they go only with other events.
  absl::Time starts_due_at = absl::InfiniteFuture();
  bool starts_due = false;
  // When the outcomes held in `outbox` are to be reported (Scheduler's
  // Options::backlog_outcome_delay), InfiniteFuture when none are held; until then they go only
  // with other events.
  absl::Time outcomes_due_at = absl::InfiniteFuture();
  // The pool changed state since the listener last collected.
  bool pool_changed = false;
  bool in_ready_ring = false;
  // OpenSession's max_running_tasks (0: no cap), and how many workers hold its capped tasks now.
  uint32_t max_running = 0;
  size_t on_workers = 0;
  bool shut_down = false;
  bool abandoned = false;
  // The listener was told and has not collected yet.
  bool listener_told = false;
  // Resumes the session on a new stream.
  std::string resume_token;
  // The largest outcome its stream can carry; 0 for any.
  uint64_t max_outcome_bytes = 0;
  SharedMemoryUse shared;
  // Its environment variables (OpenSession.env), "NAME=VALUE" sorted by name, for each of its
  // tasks' frames.
  google::protobuf::RepeatedPtrField<std::string> env;
  // The highest client task id received, accepted or not (SessionOpened.last_task_id).
  uint64_t last_task_id = 0;
  // Every outcome the session holds for its client, wherever it is (the outbox, collected by the
  // listener, or retained), by client id: what it "holds" for Ack, id reuse and the unread bound.
  absl::flat_hash_map<uint64_t, HeldOutcome> unread;
  uint64_t unread_bytes = 0;
  // What its unfinished tasks reserve for their outcomes; counted with unread_bytes against the
  // unread bound.
  uint64_t reserved_bytes = 0;
  // How many outcomes it has put in its outbox, and how many of those the listener had collected
  // at its last collection: the first `collected` (HeldOutcome::index) may be acknowledged.
  uint64_t ended = 0;
  uint64_t collected = 0;
  // Outcomes written to the stream and given back (Retain), until acknowledged.
  absl::flat_hash_map<uint64_t, v1::TaskOutcome> retained;
  // Resumed at least once: re-sent tasks it holds are ignored rather than rejected.
  bool resumed = false;
  // Its stream ended: no listener; abandoned at grace_deadline unless resumed first.
  bool detached = false;
  absl::Time grace_deadline;

  // A task of the client's id has not ended, or its outcome is not acknowledged.
  bool Holds(uint64_t client_id) const {
    return live.contains(client_id) || unread.contains(client_id);
  }
  bool OutcomesHeld() const { return outcomes_due_at != absl::InfiniteFuture(); }
  // The listener has something to collect.
  bool HasEvents() const;
  // Puts the outcome of the task `client_id` in the outbox, holding it at `bytes`.
  void Hold(uint64_t client_id, uint64_t bytes, v1::TaskOutcome outcome) {
    unread.emplace(client_id, HeldOutcome{bytes, ended++});
    unread_bytes += bytes;
    outbox.push_back(std::move(outcome));
  }
  // Forgets the outcomes of `task_ids`, wherever they are held; ignores those never collected,
  // which the client cannot have read.
  void Ack(absl::Span<const uint64_t> task_ids);
  // Keeps outcomes written to the stream until acknowledged; moves them out of `outcomes`.
  void Retain(google::protobuf::RepeatedPtrField<v1::TaskOutcome>& outcomes);
  // Puts the retained outcomes back at the front of the outbox, in task id order, for a resumed
  // stream to collect again.
  void ResendRetained();
  // Moves what the listener collects into `events` (all but `pool`).
  void Collect(SessionEvents& events);
  // Drops every outcome held and every event waiting; `dropped` sees each dropped outcome first.
  void DropOutcomes(absl::FunctionRef<void(v1::TaskOutcome&)> dropped);
  // Its tasks not ended and its outcomes not acknowledged, by client id, ascending.
  std::vector<uint64_t> PendingTaskIds() const;
};

class SessionTable {
 public:
  SessionTable() = default;
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // Adds a session resumed with `token`. INTERNAL if another session has that token.
  absl::StatusOr<SessionId> Add(std::string token);

  // The session, abandoned or not; null if it is gone. (Defined here, as the lookups below, so
  // that the scheduler's per-task calls inline.)
  Session* Find(SessionId id) {
    const auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
  }
  const Session* Find(SessionId id) const {
    const auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : &it->second;
  }
  // The session if it is open (not abandoned); null otherwise.
  Session* FindOpen(SessionId id) {
    Session* session = Find(id);
    return session == nullptr || session->abandoned ? nullptr : session;
  }
  const Session* FindOpen(SessionId id) const {
    const Session* session = Find(id);
    return session == nullptr || session->abandoned ? nullptr : session;
  }
  Session& at(SessionId id) { return sessions_.at(id); }
  const Session& at(SessionId id) const { return sessions_.at(id); }
  size_t size() const { return sessions_.size(); }

  // The session whose resume token is `token`, or 0.
  SessionId FindByToken(absl::string_view token) const;
  // The session can no longer be resumed.
  void DropToken(const Session& session) { tokens_.erase(session.resume_token); }
  // Forgets the session, and its token.
  void Erase(SessionId id);
  // Forgets the session if it is abandoned and none of its tasks is left: nobody will collect
  // anything of it again.
  void EraseIfAbandonedAndDone(SessionId id);

  // Open sessions, detached ones among them, and the detached one that has waited longest (0 for
  // none).
  struct Census {
    size_t open = 0;
    size_t detached = 0;
    SessionId longest_detached = 0;
  };
  Census Count() const;

  // The session (detached now) waits for its client until `deadline`.
  void StartGrace(SessionId id, Session& session, absl::Time deadline);
  // The earliest grace deadline, or InfiniteFuture.
  absl::Time NextGraceDeadline() const {
    return grace_deadlines_.empty() ? absl::InfiniteFuture() : grace_deadlines_.top().first;
  }
  // The next detached session whose grace period has passed by `now`, taken off the deadlines;
  // 0 for none.
  SessionId PopExpired(absl::Time now);

  // Every session's id, abandoned ones too: for a pass over all of them that may end tasks or
  // erase sessions on the way.
  std::vector<SessionId> Ids() const;
  // Calls visit(SessionId, const Session&) for each session, abandoned ones too.
  template <typename Visit>
  void ForEach(Visit visit) const {
    for (const auto& [id, session] : sessions_) visit(id, session);
  }

 private:
  absl::flat_hash_map<SessionId, Session> sessions_;
  absl::flat_hash_map<std::string, SessionId> tokens_;
  // Grace deadlines of detached sessions, earliest first; entries of sessions resumed or gone
  // since are skipped.
  using GraceDeadline = std::pair<absl::Time, SessionId>;
  std::priority_queue<GraceDeadline, std::vector<GraceDeadline>, std::greater<>> grace_deadlines_;
  SessionId next_id_ = 1;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SESSION_TABLE_H_
