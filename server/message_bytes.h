// Protobuf messages to and from the bytes of a call served as grpc::ByteBuffer (the Session stream
// and the unary methods of the generic service), converted as gRPC's generated code would.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_SERVER_MESSAGE_BYTES_H_
#define MPIGATE_SERVER_MESSAGE_BYTES_H_

#include <grpcpp/support/byte_buffer.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace mpigate::server {

// Parses a request received as bytes; INVALID_ARGUMENT if they are not one.
absl::Status ParseRequest(grpc::ByteBuffer& bytes, google::protobuf::Message& request);

// INTERNAL if `message` cannot be serialized.
absl::StatusOr<grpc::ByteBuffer> Serialize(const google::protobuf::Message& message);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_MESSAGE_BYTES_H_
