#include "server/message_bytes.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include "absl/strings/str_cat.h"

namespace mpigate::server {

absl::Status ParseRequest(grpc::ByteBuffer& bytes, google::protobuf::Message& request) {
  if (!grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&bytes, &request).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request does not parse as ", request.GetTypeName()));
  }
  return absl::OkStatus();
}

absl::StatusOr<grpc::ByteBuffer> Serialize(const google::protobuf::Message& message) {
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  if (!grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, &bytes, &own_buffer)
           .ok()) {
    return absl::InternalError(absl::StrCat("cannot serialize a ", message.GetTypeName()));
  }
  return bytes;
}

}  // namespace mpigate::server
