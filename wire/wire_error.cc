#include "wire/wire_error.h"

#include <string>

namespace mpigate::wire {

void SetError(const absl::Status& status, ErrorInfo& error) {
  error.set_code(static_cast<int32_t>(status.code()));
  error.set_message(std::string(status.message()));
}

absl::StatusCode StatusCodeFromWire(int32_t code) {
  if (code < 0 || code > static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace mpigate::wire
