// `mpigate status` and `mpigate shutdown`: one Gateway call each, through a raw stub, since the
// client library (a session per executor) has neither.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <utility>

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
#include "common/pool_figures.h"

namespace mpigate::cli {
namespace {

// Makes one Gateway call to the service `line` names: `call(stub, context)` returns its
// grpc::Status. The context carries the service's token and a deadline: DEADLINE_EXCEEDED if the
// service does not answer in time (not wait_for_ready: with nothing listening the call fails at
// once, UNAVAILABLE). Sets `target` to the target dialed. kExitSuccess once the call succeeded,
// else the exit code after a diagnostic: "<failure> <target>: <error>".
template <typename Call>
int CallService(const CommandLine& line, absl::string_view failure, Call call,
                std::string& target) {
  absl::StatusOr<ServiceStub> service = MakeServiceStub(line);
  if (!service.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(service.status())));
    return ExitCodeForServiceError(service.status());
  }
  target = service->target;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + line.connect_timeout));
  AttachToken(context, service->token);
  const absl::Status called = FromGrpcStatus(call(*service->stub, context));
  if (!called.ok()) {
    PrintDiagnostic(absl::StrCat(failure, " ", target, ": ", StatusText(called)));
    return ExitCodeForServiceError(called);
  }
  return kExitSuccess;
}

}  // namespace

int RunStatus(const CommandLine& line) {
  v1::PoolStatus status;
  std::string target;
  const int called = CallService(
      line, "cannot get the status of",
      [&](v1::Gateway::Stub& stub, grpc::ClientContext& context) {
        return stub.GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status);
      },
      target);
  if (called != kExitSuccess) return called;
  std::string text;
  if (line.json) {
    absl::StatusOr<std::string> json = PoolStatusJson(status, JsonLayout::kIndented);
    if (!json.ok()) {
      PrintDiagnostic(absl::StrCat("status: ", StatusText(json.status())));
      return kExitError;
    }
    text = *std::move(json);
  } else {
    text = FormatPoolStatus(status, target);
  }
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    PrintDiagnostic("status: cannot write to stdout");
    return kExitError;
  }
  return kExitSuccess;
}

int RunShutdown(const CommandLine& line) {
  v1::StopServiceRequest request;
  request.set_reason(line.reason);
  v1::StopServiceResponse response;
  std::string target;
  const int called = CallService(
      line, "cannot stop",
      [&](v1::Gateway::Stub& stub, grpc::ClientContext& context) {
        return stub.StopService(&context, request, &response);
      },
      target);
  if (called != kExitSuccess) return called;
  PrintDiagnostic(absl::StrCat("the service at ", target, " is draining and will exit"));
  return kExitSuccess;
}

}  // namespace mpigate::cli
