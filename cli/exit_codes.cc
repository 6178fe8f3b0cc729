#include "cli/exit_codes.h"

namespace mpigate::cli {

int ExitCodeForServiceError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitSuccess;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kNotFound:
      return kExitUnavailable;
    default:
      return kExitError;
  }
}

int ExitCodeForTaskError(const absl::Status& status) {
  if (status.ok()) return kExitSuccess;
  return status.code() == absl::StatusCode::kUnavailable ? kExitUnavailable : kExitTaskFailed;
}

}  // namespace mpigate::cli
