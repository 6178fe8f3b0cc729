// OutcomeBuilder: makes a task's TaskOutcome from what its workers reported, and fits it to what
// its session may hold: an outcome larger than the session's stream carries, or one that would
// take the session past the unread bound, is replaced by a RESOURCE_EXHAUSTED failure, which is
// never larger than what the task reserved at submit (ReserveBytes). It also owns the removal of
// shared memory objects the scheduler drops (Scheduler::Options::release_shared_object).
//
// Thread-safety: none of its own; the scheduler owns one and calls it under its lock.
#ifndef MPIGATE_SERVER_OUTCOME_BUILDER_H_
#define MPIGATE_SERVER_OUTCOME_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mpigate/v1/task.pb.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

class OutcomeBuilder {
 public:
  // `workers`: the pool's size, the most members a group task has. `max_message_bytes`: the
  // service's message limit, 0 for none. `max_unread_result_bytes`: the unread bound, 0 for none.
  // `release_shared_object` removes a shared memory object; it must be quick and not call back.
  OutcomeBuilder(int workers, uint64_t max_message_bytes, uint64_t max_unread_result_bytes,
                 std::function<void(const std::string& name)> release_shared_object);
  OutcomeBuilder(const OutcomeBuilder&) = delete;
  OutcomeBuilder& operator=(const OutcomeBuilder&) = delete;

  uint64_t max_message_bytes() const { return max_message_bytes_; }
  uint64_t max_unread_result_bytes() const { return max_unread_result_bytes_; }

  // What a task reserves in its session's unread bound from its acceptance until it ends: room
  // for the largest failure Fit*() may put in place of its outcome.
  uint64_t ReserveBytes(bool group) const {
    return group ? group_reserve_bytes_ : single_reserve_bytes_;
  }

  // The largest outcome a session's stream carries, for a client that accepts messages of up to
  // `client_max_message_bytes` (0: any); 0 for any.
  uint64_t MaxOutcomeBytes(uint64_t client_max_message_bytes) const;

  // What a session holds for `outcome`: the message, its result in shared memory, and the
  // bookkeeping around it.
  static size_t HeldBytes(const v1::TaskOutcome& outcome);

  // Fills in what one worker's result says: state, result, items or error, and run time. Moves
  // the result's bytes out. An `interrupted` task that gives up with CANCELLED is CANCELLED.
  static void FromResult(wire::ResultFrame& result, bool interrupted, v1::TaskOutcome& outcome);

  // The outcome of a group task whose `members` have all reported `results` (by member): a
  // broadcast's has one item per worker; a gang's is rank 0's, unless a rank failed: then the
  // lowest that was lost with its worker, else the lowest that failed. Moves the results out.
  static v1::TaskOutcome FromGroup(std::vector<wire::ResultFrame>& results,
                                   absl::Span<const int> members, bool broadcast, bool interrupted);

  // An outcome in `state` with the error `code` and `why`, for a task the scheduler ends itself.
  static v1::TaskOutcome Failure(v1::TaskState state, absl::StatusCode code, absl::string_view why);

  // Records where a task ran: its first worker and, for a group task, all of them in order.
  static void SetWorkers(absl::Span<const int> members, bool group, v1::TaskOutcome& outcome);

  // Replaces `outcome` (`size` bytes encoded) by a RESOURCE_EXHAUSTED failure if it is larger
  // than `max_outcome_bytes` (0: any), releasing its shared result; true if it did.
  bool FitToStream(uint64_t max_outcome_bytes, size_t size, v1::TaskOutcome& outcome) const;

  // Fits the outcome of a task (task_id set) to its session, which streams outcomes of up to
  // `max_outcome_bytes` and holds `unread_bytes` of outcomes and `reserved_bytes` for its other
  // unfinished tasks: first to the stream, then to the unread bound. Returns what holding the
  // outcome costs (HeldBytes).
  size_t FitToSession(uint64_t max_outcome_bytes, uint64_t unread_bytes, uint64_t reserved_bytes,
                      v1::TaskOutcome& outcome) const;

  // Removes the shared memory object of a result that is dropped unread, if it has one.
  void ReleaseSharedResult(v1::TaskOutcome& outcome) const;
  // Removes a shared memory object the scheduler owns (a task's input, once the task has ended).
  void ReleaseSharedObject(const std::string& name) const { release_shared_object_(name); }

 private:
  // Replaces `outcome` by a RESOURCE_EXHAUSTED failure saying `message`, releasing its shared
  // result; keeps where and how long it ran.
  void FailResourceExhausted(std::string message, v1::TaskOutcome& outcome) const;

  const uint64_t max_message_bytes_;
  const uint64_t max_unread_result_bytes_;
  const uint64_t single_reserve_bytes_;
  const uint64_t group_reserve_bytes_;
  const std::function<void(const std::string&)> release_shared_object_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_OUTCOME_BUILDER_H_
