#include "client/broadcast.h"

#include <memory>

#include "client/internal/future_core.h"

namespace mpigate {

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BroadcastFuture::Results(
    absl::Duration timeout) const {
  const std::shared_ptr<internal::FutureCore>& core = internal::FutureAccess::Core(future_);
  if (absl::Status status = core->Exception(timeout); !status.ok()) return status;
  return core->Items();
}

}  // namespace mpigate
