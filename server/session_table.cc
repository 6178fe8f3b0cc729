#include "server/session_table.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mpigate::server {

absl::StatusOr<std::string> RandomResumeToken() {
  std::string token(16, '\0');
  size_t filled = 0;
  while (filled < token.size()) {
    const ssize_t n = getrandom(token.data() + filled, token.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  return token;
}

bool Session::HasEvents() const {
  // Held outcomes hold back the starts that came due meanwhile too: they go together.
  return (!OutcomesHeld() && (!outbox.empty() || (starts_due && !started.empty()))) ||
         !progress.empty() || pool_changed || (shut_down && live.empty());
}

void Session::Ack(absl::Span<const uint64_t> task_ids) {
  for (const uint64_t task_id : task_ids) {
    const auto it = unread.find(task_id);
    // An outcome never collected cannot have been read: acknowledging it would free its bytes
    // while it still waits in the outbox.
    if (it == unread.end() || it->second.index >= collected) continue;
    unread_bytes -= it->second.bytes;
    unread.erase(it);
    // An outcome not given back yet is dropped when it is (Retain).
    retained.erase(task_id);
  }
}

void Session::Retain(google::protobuf::RepeatedPtrField<v1::TaskOutcome>& outcomes) {
  for (v1::TaskOutcome& outcome : outcomes) {
    if (unread.contains(outcome.task_id())) {
      retained.insert_or_assign(outcome.task_id(), std::move(outcome));
    }
  }
}

void Session::ResendRetained() {
  std::vector<v1::TaskOutcome> resent;
  resent.reserve(retained.size() + outbox.size());
  for (auto& [client_id, outcome] : retained) resent.push_back(std::move(outcome));
  retained.clear();
  std::sort(resent.begin(), resent.end(), [](const v1::TaskOutcome& a, const v1::TaskOutcome& b) {
    return a.task_id() < b.task_id();
  });
  std::move(outbox.begin(), outbox.end(), std::back_inserter(resent));
  outbox = std::move(resent);
}

void Session::Collect(SessionEvents& events) {
  events.started.swap(started);
  starts_due_at = absl::InfiniteFuture();
  starts_due = false;
  outcomes_due_at = absl::InfiniteFuture();
  events.outcomes.swap(outbox);
  collected = ended;
  events.progress.reserve(progress.size());
  for (auto& [client_id, latest] : progress) events.progress.push_back(std::move(latest));
  progress.clear();
  listener_told = false;
  events.closed = shut_down && live.empty();
}

void Session::DropOutcomes(absl::FunctionRef<void(v1::TaskOutcome&)> dropped) {
  for (v1::TaskOutcome& outcome : outbox) dropped(outcome);
  outbox.clear();
  started.clear();
  starts_due_at = absl::InfiniteFuture();
  starts_due = false;
  outcomes_due_at = absl::InfiniteFuture();
  progress.clear();
  for (auto& [client_id, outcome] : retained) dropped(outcome);
  retained.clear();
  unread.clear();
  unread_bytes = 0;
}

std::vector<uint64_t> Session::PendingTaskIds() const {
  std::vector<uint64_t> ids;
  ids.reserve(live.size() + unread.size());
  for (const auto& [client_id, key] : live) ids.push_back(client_id);
  for (const auto& [client_id, held] : unread) ids.push_back(client_id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<SessionId> SessionTable::Add(std::string token) {
  if (tokens_.contains(token)) {
    return absl::InternalError("the resume token source repeated itself");
  }
  const SessionId id = next_id_++;
  tokens_.emplace(token, id);
  sessions_[id].resume_token = std::move(token);
  return id;
}

SessionId SessionTable::FindByToken(absl::string_view token) const {
  const auto it = tokens_.find(token);
  return it == tokens_.end() ? 0 : it->second;
}

void SessionTable::Erase(SessionId id) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  DropToken(it->second);
  sessions_.erase(it);
}

void SessionTable::EraseIfAbandonedAndDone(SessionId id) {
  const auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.abandoned && it->second.live.empty()) sessions_.erase(it);
}

std::vector<SessionId> SessionTable::Ids() const {
  std::vector<SessionId> ids;
  ids.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_) ids.push_back(id);
  return ids;
}

SessionTable::Census SessionTable::Count() const {
  Census census;
  absl::Time longest = absl::InfiniteFuture();
  for (const auto& [id, session] : sessions_) {
    if (session.abandoned) continue;
    ++census.open;
    if (!session.detached) continue;
    ++census.detached;
    if (session.grace_deadline < longest) {
      census.longest_detached = id;
      longest = session.grace_deadline;
    }
  }
  return census;
}

void SessionTable::StartGrace(SessionId id, Session& session, absl::Time deadline) {
  session.detached = true;
  session.grace_deadline = deadline;
  grace_deadlines_.emplace(deadline, id);
}

SessionId SessionTable::PopExpired(absl::Time now) {
  while (!grace_deadlines_.empty() && grace_deadlines_.top().first <= now) {
    const auto [deadline, id] = grace_deadlines_.top();
    grace_deadlines_.pop();
    const auto it = sessions_.find(id);
    // Resumed since (and maybe detached again, with a later deadline), or gone.
    if (it == sessions_.end() || !it->second.detached || it->second.grace_deadline != deadline) {
      continue;
    }
    return id;
  }
  return 0;
}

}  // namespace mpigate::server
