#include "client/typed.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/future_core.h"

namespace mpigate::internal {

absl::StatusOr<std::string> SerializeRequest(const google::protobuf::Message& request) {
  std::string bytes;
  // Protobuf refuses only messages above its 2 GiB limit, which no gRPC message can carry either.
  if (!request.SerializeToString(&bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat("a ", request.GetTypeName(), " of ",
                                                     request.ByteSizeLong(),
                                                     " bytes is above Protobuf's 2 GiB limit"));
  }
  return bytes;
}

Future SubmitMessage(Executor& executor, absl::string_view function,
                     const google::protobuf::Message& request, SubmitOptions options) {
  absl::StatusOr<std::string> payload = SerializeRequest(request);
  if (!payload.ok()) return FutureCore::Failed(0, payload.status());
  options.payload_type = request.GetTypeName();
  return executor.Submit(function, *std::move(payload), options);
}

absl::Status ParseResponse(absl::string_view bytes, google::protobuf::Message& response) {
  if (response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat("the task's result (", bytes.size(),
                                          " bytes) is not a valid ", response.GetTypeName()));
}

}  // namespace mpigate::internal
