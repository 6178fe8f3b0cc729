#include "client/internal/outcome_decoding.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/shared_memory.h"
#include "common/grpc_status.h"

namespace mpigate::internal {

absl::StatusCode CodeFromWire(int32_t code, absl::StatusCode if_ok) {
  return code == 0 ? if_ok : CanonicalCode(code);
}

absl::Status StatusFromError(const v1::TaskError& error, absl::StatusCode if_ok) {
  const absl::StatusCode code = CodeFromWire(error.code(), if_ok);
  if (error.exception_type().empty()) return absl::Status(code, error.message());
  return absl::Status(code, absl::StrCat(error.exception_type(), ": ", error.message()));
}

Ending EndingOf(v1::TaskOutcome& outcome) {
  Ending ending;
  ending.attempts = outcome.attempts();
  switch (outcome.state()) {
    case v1::TASK_STATE_SUCCEEDED:
      ending.result = std::move(*outcome.mutable_result());
      ending.items.reserve(outcome.items_size());
      for (v1::ItemOutcome& item : *outcome.mutable_items()) {
        if (item.has_error()) {
          ending.items.push_back(StatusFromError(item.error(), absl::StatusCode::kUnknown));
        } else {
          ending.items.push_back(std::move(*item.mutable_result()));
        }
      }
      break;
    case v1::TASK_STATE_FAILED:
      ending.result = StatusFromError(outcome.error(), absl::StatusCode::kUnknown);
      break;
    case v1::TASK_STATE_CANCELLED:
      ending.state = FutureState::kCancelled;
      ending.result = StatusFromError(outcome.error(), absl::StatusCode::kCancelled);
      break;
    default:
      ending.result = absl::InternalError(absl::StrCat(
          "the service sent an outcome with no end state for task ", outcome.task_id()));
  }
  return ending;
}

void ReadSharedResult(const v1::SharedBytes& shared, Ending& ending) {
  // One small enough to be recycled is copied out now, so that its object can be parked for the
  // next payload; a larger one stays mapped, saving a copy.
  if (shared.size() <= kMaxParkedObjectBytes) {
    ending.result = ReadSharedObject(shared.name(), shared.size());
    return;
  }
  absl::StatusOr<SharedMapping> mapped = SharedMapping::Map(shared.name(), shared.size());
  if (mapped.ok()) {
    ending.shared_result = *std::move(mapped);
  } else {
    ending.result = mapped.status();
  }
}

Ending EndingOf(const v1::TaskRejection& rejection) {
  return Ending{
      FutureState::kFinished,
      absl::Status(CodeFromWire(rejection.code(), absl::StatusCode::kUnknown), rejection.message()),
      {}};
}

Ending CancelledBeforeStart(uint64_t task_id) {
  return Ending{
      FutureState::kCancelled,
      absl::CancelledError(absl::StrCat("task ", task_id, " was cancelled before it started")),
      {}};
}

}  // namespace mpigate::internal
