// The one place where absl::Status and grpc::Status meet, and where an int code (gRPC's, or the
// code field of one of mpigate's messages: wire frames, v1's TaskError and TaskRejection) becomes
// a canonical code. Both use the canonical numbering, so code and message stay as they are.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_COMMON_GRPC_STATUS_H_
#define MPIGATE_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace mpigate {

// The canonical code numbered `code`; UNKNOWN outside the canonical range (a peer that is newer
// or broken), rather than a code no one can name.
absl::StatusCode CanonicalCode(int code);

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_GRPC_STATUS_H_
