// The one place where absl::Status and grpc::Status meet. Both use the canonical code numbering,
// so the conversion keeps code and message as they are.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_COMMON_GRPC_STATUS_H_
#define MPIGATE_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace mpigate {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_GRPC_STATUS_H_
