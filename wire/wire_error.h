// An absl::Status written into a wire::ErrorInfo, by every end alike (the gateway, the workers and
// the runners); CanonicalCode (common/grpc_status.h) reads a code back.
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

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_WIRE_ERROR_H_
