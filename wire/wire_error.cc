#include "wire/wire_error.h"

#include <string>

namespace mpigate::wire {

void SetError(const absl::Status& status, ErrorInfo& error) {
  error.set_code(static_cast<int32_t>(status.code()));
  error.set_message(std::string(status.message()));
}

}  // namespace mpigate::wire
