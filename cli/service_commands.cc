// `mpigate status` and `mpigate shutdown`: one Gateway call each, through a raw stub, since the
// client library (a session per executor) has neither.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/status_text.h"
#include "common/access.h"
#include "common/grpc_status.h"

namespace mpigate::cli {
namespace {

// A context whose call carries the service's token and fails with DEADLINE_EXCEEDED if the service
// does not answer in time. Not wait_for_ready: with nothing listening the call fails at once,
// UNAVAILABLE.
void PrepareContext(const CommandLine& line, const ServiceStub& service,
                    grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + line.connect_timeout));
  AttachToken(context, service.token);
}

}  // namespace

int RunStatus(const CommandLine& line) {
  absl::StatusOr<ServiceStub> service = MakeServiceStub(line);
  if (!service.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(service.status())));
    return ExitCodeForServiceError(service.status());
  }
  grpc::ClientContext context;
  PrepareContext(line, *service, context);
  v1::PoolStatus status;
  const absl::Status called =
      FromGrpcStatus(service->stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status));
  if (!called.ok()) {
    PrintDiagnostic(
        absl::StrCat("cannot get the status of ", service->target, ": ", StatusText(called)));
    return ExitCodeForServiceError(called);
  }
  std::string text;
  if (line.json) {
    absl::StatusOr<std::string> json = PoolStatusJson(status);
    if (!json.ok()) {
      PrintDiagnostic(absl::StrCat("status: ", StatusText(json.status())));
      return kExitError;
    }
    text = *std::move(json);
  } else {
    text = FormatPoolStatus(status, service->target);
  }
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    PrintDiagnostic("status: cannot write to stdout");
    return kExitError;
  }
  return kExitSuccess;
}

int RunShutdown(const CommandLine& line) {
  absl::StatusOr<ServiceStub> service = MakeServiceStub(line);
  if (!service.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(service.status())));
    return ExitCodeForServiceError(service.status());
  }
  grpc::ClientContext context;
  PrepareContext(line, *service, context);
  v1::StopServiceRequest request;
  request.set_reason(line.reason);
  v1::StopServiceResponse response;
  const absl::Status called =
      FromGrpcStatus(service->stub->StopService(&context, request, &response));
  if (!called.ok()) {
    PrintDiagnostic(absl::StrCat("cannot stop ", service->target, ": ", StatusText(called)));
    return ExitCodeForServiceError(called);
  }
  PrintDiagnostic(absl::StrCat("the service at ", service->target, " is draining and will exit"));
  return kExitSuccess;
}

}  // namespace mpigate::cli
