// Pieces the commands of cli/commands.h share: reading their input, connecting to the service,
// and wording errors. Private to //cli.
//
// Thread-safety: functions, each safe to call from any thread.
#ifndef MPIGATE_CLI_COMMAND_SUPPORT_H_
#define MPIGATE_CLI_COMMAND_SUPPORT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/command_line.h"
#include "client/executor.h"
#include "mpigate/v1/gateway.grpc.pb.h"

namespace mpigate::cli {

// "CODE: message", as every diagnostic of the command line words an error.
std::string StatusText(const absl::Status& status);

// Prints "mpigate: <text>\n" to stderr.
void PrintDiagnostic(absl::string_view text);

// All of the file at `path`, or of stdin for "-". NOT_FOUND, PERMISSION_DENIED and the like, with
// the path and the reason, if it cannot be read.
absl::StatusOr<std::string> ReadInput(const std::string& path);

// An executor of the service `line` names (--endpoint, else $MPIGATE_ENDPOINT, else the endpoint
// file), with its access flags (--token-file, --tls-*) and `line.connect_timeout`, whose session
// the service's status shows as `client_name`. NOT_FOUND or INVALID_ARGUMENT for a token or PEM
// file that cannot be read or holds no valid token.
absl::StatusOr<std::unique_ptr<Executor>> ConnectExecutor(const CommandLine& line,
                                                          absl::string_view client_name);

// A stub for one-call RPCs, and the target it dials.
struct ServiceStub {
  std::string target;
  // Every call carries it (AttachToken of common/access.h); empty: none.
  std::string token;
  std::unique_ptr<v1::Gateway::Stub> stub;
};

// Resolves the target as ConnectExecutor() does (NOT_FOUND if none is known) and makes a stub; it
// does not connect yet: the first call does.
absl::StatusOr<ServiceStub> MakeServiceStub(const CommandLine& line);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_COMMAND_SUPPORT_H_
