#include "cli/command_support.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/access.h"

namespace mpigate::cli {
namespace {

absl::Status ErrnoError(int error, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

std::string StatusText(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

void PrintDiagnostic(absl::string_view text) {
  const std::string line = absl::StrCat("mpigate: ", text, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  const bool from_stdin = path == "-";
  const std::string name = from_stdin ? "stdin" : path;
  const int fd = from_stdin ? STDIN_FILENO : open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("cannot open ", name));
  std::string text;
  char buffer[1 << 16];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      if (!from_stdin) close(fd);
      return ErrnoError(error, absl::StrCat("cannot read ", name));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  if (!from_stdin) close(fd);
  return text;
}

absl::StatusOr<std::unique_ptr<Executor>> ConnectExecutor(const CommandLine& line,
                                                          absl::string_view client_name) {
  ExecutorOptions options;
  options.endpoint = line.endpoint;
  options.client_name = std::string(client_name);
  options.connect_timeout = line.connect_timeout;
  return Executor::Connect(std::move(options));
}

absl::StatusOr<ServiceStub> MakeServiceStub(const CommandLine& line) {
  absl::StatusOr<Connection> connection = ResolveConnection(line.endpoint, {});
  if (!connection.ok()) return connection.status();
  ServiceStub service;
  service.target = connection->target;
  service.token = connection->token;
  service.stub = v1::Gateway::NewStub(grpc::CreateChannel(service.target, connection->credentials));
  return service;
}

}  // namespace mpigate::cli
