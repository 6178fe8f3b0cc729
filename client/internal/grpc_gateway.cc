#include "client/internal/grpc_gateway.h"

#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/sync_stream.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace mpigate::internal {
namespace {

gpr_timespec DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN));
}

// One Session call: its context must outlive its stream (declared first, destroyed last).
class GrpcSessionStream final : public SessionStream {
 public:
  GrpcSessionStream(v1::Gateway::Stub& stub, const std::string& token, bool wait_for_ready) {
    context_.set_wait_for_ready(wait_for_ready);
    AttachToken(context_, token);
    stream_ = stub.Session(&context_);
  }

  bool Write(const v1::SessionRequest& request) override { return stream_->Write(request); }
  bool Read(v1::SessionEvent* event) override { return stream_->Read(event); }
  void Cancel() override { context_.TryCancel(); }
  absl::Status Finish() override { return FromGrpcStatus(stream_->Finish()); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcGateway>> GrpcGateway::Connect(const Connection& connection,
                                                                  int max_message_bytes,
                                                                  absl::Duration connect_timeout) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(max_message_bytes);
  args.SetMaxReceiveMessageSize(max_message_bytes);
  // After a dropped connection the channel reconnects within a second, not gRPC's default of up
  // to two minutes, so that a resumed session is back well within the service's grace period.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS stays at its default: gRPC takes it as the time a connection
  // attempt, handshake included, may last, and a shorter one cut off a loaded service's
  // handshakes again and again.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(connection.target, connection.credentials, args);
  if (!channel->WaitForConnected(DeadlineAfter(connect_timeout))) {
    return absl::UnavailableError(
        absl::StrCat("the mpigate service at ", connection.target, " did not answer within ",
                     absl::FormatDuration(connect_timeout), "; is it running?"));
  }
  return std::unique_ptr<GrpcGateway>(
      new GrpcGateway(connection.target, connection.token, std::move(channel)));
}

GrpcGateway::GrpcGateway(std::string target, std::string token,
                         std::shared_ptr<grpc::Channel> channel)
    : target_(std::move(target)),
      token_(std::move(token)),
      channel_(std::move(channel)),
      stub_(v1::Gateway::NewStub(channel_)) {}

std::unique_ptr<SessionStream> GrpcGateway::StartSession(bool wait_for_ready) {
  return std::make_unique<GrpcSessionStream>(*stub_, token_, wait_for_ready);
}

absl::StatusOr<std::vector<FunctionInfo>> GrpcGateway::ListFunctions(absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout));
  AttachToken(context, token_);
  v1::ListFunctionsResponse response;
  const grpc::Status status = stub_->ListFunctions(&context, v1::ListFunctionsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::vector<FunctionInfo> functions;
  functions.reserve(response.functions_size());
  for (v1::FunctionInfo& function : *response.mutable_functions()) {
    functions.push_back(FunctionInfo{
        std::move(*function.mutable_name()), std::move(*function.mutable_description()),
        std::move(*function.mutable_request_type()), std::move(*function.mutable_response_type()),
        function.gang()});
  }
  return functions;
}

}  // namespace mpigate::internal
