#include "server/outcome_builder.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::server {
namespace {

// Room for what a session's stream wraps around one outcome (SessionEvent.updates.outcomes: two
// field tags and lengths).
constexpr uint64_t kStreamFramingBytes = 64;

// The longest message of a failure made in place of an outcome that cannot be held or sent: what
// every task reserves room for may not depend on its input.
constexpr size_t kMaxReplacementMessageBytes = 400;

// What holding one outcome costs the gateway beyond its encoded bytes: the message objects
// (TaskOutcome, TaskError), its entries in the session's `unread` map and outbox, and its id in
// `started`. Counted so that a session of many tiny outcomes is bounded by what it takes in memory,
// not by the few bytes each takes on the wire.
constexpr size_t kHeldOutcomeOverheadBytes = sizeof(v1::TaskOutcome) + sizeof(v1::TaskError) + 64;

void SetError(absl::StatusCode code, absl::string_view message, v1::TaskError& error) {
  error.set_code(static_cast<int>(code));
  error.set_message(std::string(message));
}

// The most a failure made by FailResourceExhausted can hold (HeldBytes) for a task that runs on up
// to `members` workers: every field at its widest.
size_t ReplacementBytes(int members) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(std::numeric_limits<uint64_t>::max());
  outcome.set_state(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kResourceExhausted));
  outcome.mutable_error()->set_message(std::string(kMaxReplacementMessageBytes, 'x'));
  outcome.set_worker(-1);
  outcome.set_queue_us(std::numeric_limits<uint64_t>::max());
  outcome.set_run_us(std::numeric_limits<uint64_t>::max());
  outcome.set_attempts(std::numeric_limits<uint32_t>::max());
  if (members > 1) {
    for (int i = 0; i < members; ++i) outcome.add_workers(std::numeric_limits<int32_t>::max());
  }
  return OutcomeBuilder::HeldBytes(outcome);
}

void CopyError(wire::ErrorInfo& from, v1::TaskError& to) {
  to.set_code(from.code());
  to.set_message(std::move(*from.mutable_message()));
  to.set_exception_type(std::move(*from.mutable_exception_type()));
}

}  // namespace

OutcomeBuilder::OutcomeBuilder(int workers, uint64_t max_message_bytes,
                               uint64_t max_unread_result_bytes,
                               std::function<void(const std::string&)> release_shared_object)
    : max_message_bytes_(max_message_bytes),
      max_unread_result_bytes_(max_unread_result_bytes),
      single_reserve_bytes_(ReplacementBytes(1)),
      group_reserve_bytes_(ReplacementBytes(workers)),
      release_shared_object_(std::move(release_shared_object)) {}

size_t OutcomeBuilder::HeldBytes(const v1::TaskOutcome& outcome) {
  return outcome.ByteSizeLong() + outcome.shared_result().size() + kHeldOutcomeOverheadBytes;
}

uint64_t OutcomeBuilder::MaxOutcomeBytes(uint64_t client_max_message_bytes) const {
  uint64_t limit = max_message_bytes_;
  if (client_max_message_bytes > 0 && (limit == 0 || client_max_message_bytes < limit)) {
    limit = client_max_message_bytes;
  }
  if (limit == 0) return 0;
  return limit > kStreamFramingBytes ? limit - kStreamFramingBytes : 1;
}

void OutcomeBuilder::FromResult(wire::ResultFrame& result, bool interrupted,
                                v1::TaskOutcome& outcome) {
  outcome.set_run_us(result.run_us());
  switch (result.outcome_case()) {
    case wire::ResultFrame::kError:
      // An interrupted function that gives up says so with CANCELLED.
      outcome.set_state(interrupted && result.error().code() ==
                                           static_cast<int>(absl::StatusCode::kCancelled)
                            ? v1::TASK_STATE_CANCELLED
                            : v1::TASK_STATE_FAILED);
      CopyError(*result.mutable_error(), *outcome.mutable_error());
      break;
    case wire::ResultFrame::kResult:
      outcome.set_state(v1::TASK_STATE_SUCCEEDED);
      outcome.set_result(std::move(*result.mutable_result()));
      break;
    case wire::ResultFrame::OUTCOME_NOT_SET:
      // A chunk: each item carries its own result or error; or a result in shared memory.
      outcome.set_state(v1::TASK_STATE_SUCCEEDED);
      if (result.has_shared_result()) {
        outcome.mutable_shared_result()->set_name(
            std::move(*result.mutable_shared_result()->mutable_name()));
        outcome.mutable_shared_result()->set_size(result.shared_result().size());
      }
      for (wire::ItemResult& item : *result.mutable_items()) {
        v1::ItemOutcome& item_outcome = *outcome.add_items();
        if (item.has_error()) {
          CopyError(*item.mutable_error(), *item_outcome.mutable_error());
        } else {
          item_outcome.set_result(std::move(*item.mutable_result()));
        }
      }
      break;
  }
}

v1::TaskOutcome OutcomeBuilder::FromGroup(std::vector<wire::ResultFrame>& results,
                                          absl::Span<const int> members, bool broadcast,
                                          bool interrupted) {
  v1::TaskOutcome outcome;
  uint64_t run_us = 0;
  for (const wire::ResultFrame& result : results) run_us = std::max(run_us, result.run_us());
  if (broadcast) {
    // Each worker's call succeeds or fails on its own, as the items of a chunk do.
    outcome.set_state(v1::TASK_STATE_SUCCEEDED);
    for (wire::ResultFrame& result : results) {
      v1::ItemOutcome& item = *outcome.add_items();
      if (result.has_error()) {
        CopyError(*result.mutable_error(), *item.mutable_error());
      } else {
        item.set_result(std::move(*result.mutable_result()));
      }
    }
  } else {
    // The other ranks' failures follow from the first that was lost with its worker.
    auto failed = std::find_if(results.begin(), results.end(), [](const wire::ResultFrame& result) {
      return result.runner_lost();
    });
    if (failed == results.end()) {
      failed = std::find_if(results.begin(), results.end(),
                            [](const wire::ResultFrame& result) { return result.has_error(); });
    }
    const size_t rank = failed == results.end() ? 0 : static_cast<size_t>(failed - results.begin());
    FromResult(results[rank], interrupted, outcome);
    if (outcome.has_error()) {
      outcome.mutable_error()->set_message(absl::StrCat(
          "gang rank ", rank, " (worker ", members[rank], "): ", outcome.error().message()));
    }
  }
  outcome.set_run_us(run_us);
  return outcome;
}

v1::TaskOutcome OutcomeBuilder::Failure(v1::TaskState state, absl::StatusCode code,
                                        absl::string_view why) {
  v1::TaskOutcome outcome;
  outcome.set_state(state);
  SetError(code, why, *outcome.mutable_error());
  return outcome;
}

void OutcomeBuilder::SetWorkers(absl::Span<const int> members, bool group,
                                v1::TaskOutcome& outcome) {
  outcome.set_worker(members.front());
  if (group) outcome.mutable_workers()->Add(members.begin(), members.end());
}

bool OutcomeBuilder::FitToStream(uint64_t max_outcome_bytes, size_t size,
                                 v1::TaskOutcome& outcome) const {
  if (max_outcome_bytes == 0 || size <= max_outcome_bytes) return false;
  FailResourceExhausted(
      absl::StrCat("the outcome of task ", outcome.task_id(), " (", size,
                   " bytes) is larger than the largest message its session's stream carries (",
                   max_outcome_bytes,
                   " bytes: the service's --max_message_mb or the client's max_message_bytes, "
                   "whichever is smaller, less framing); raise both, or return less"),
      outcome);
  return true;
}

size_t OutcomeBuilder::FitToSession(uint64_t max_outcome_bytes, uint64_t unread_bytes,
                                    uint64_t reserved_bytes, v1::TaskOutcome& outcome) const {
  FitToStream(max_outcome_bytes, outcome.ByteSizeLong(), outcome);
  const size_t size = HeldBytes(outcome);
  if (max_unread_result_bytes_ == 0 ||
      unread_bytes + reserved_bytes + size <= max_unread_result_bytes_) {
    return size;
  }
  FailResourceExhausted(
      absl::StrCat("the outcome of task ", outcome.task_id(), " (", size,
                   " bytes) would take its session past the server's limit of ",
                   max_unread_result_bytes_,
                   " bytes of unread outcomes (--max_unread_result_mb): the session already holds ",
                   unread_bytes,
                   " bytes of outcomes its client has not read; raise --max_unread_result_mb or "
                   "read results sooner"),
      outcome);
  return HeldBytes(outcome);
}

void OutcomeBuilder::ReleaseSharedResult(v1::TaskOutcome& outcome) const {
  if (!outcome.has_shared_result()) return;
  release_shared_object_(outcome.shared_result().name());
  outcome.clear_shared_result();
}

void OutcomeBuilder::FailResourceExhausted(std::string message, v1::TaskOutcome& outcome) const {
  ReleaseSharedResult(outcome);
  outcome.clear_result();
  outcome.clear_items();
  outcome.set_state(v1::TASK_STATE_FAILED);
  outcome.mutable_error()->Clear();
  if (message.size() > kMaxReplacementMessageBytes) message.resize(kMaxReplacementMessageBytes);
  SetError(absl::StatusCode::kResourceExhausted, message, *outcome.mutable_error());
}

}  // namespace mpigate::server
