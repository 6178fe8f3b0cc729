// Status codes on the wire: an absl::Status written into a wire::ErrorInfo, and the int code of
// any of mpigate's messages (ErrorInfo, v1's TaskError and TaskRejection) read back as a canonical
// code. One place, so that every end writes and reads a code alike.
//
// Pure functions; safe from any thread. No MPI.
#ifndef MPIGATE_WIRE_WIRE_ERROR_H_
#define MPIGATE_WIRE_WIRE_ERROR_H_

#include <cstdint>

#include "absl/status/status.h"
#include "wire/frames.pb.h"

namespace mpigate::wire {

// Writes `status`'s code and message into `error`.
void SetError(const absl::Status& status, ErrorInfo& error);

// The canonical code that `code` on the wire stands for. A code outside absl's canonical range
// (a peer that is newer or broken) is UNKNOWN rather than a code no one can name.
absl::StatusCode StatusCodeFromWire(int32_t code);

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_WIRE_ERROR_H_
