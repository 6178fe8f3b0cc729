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

namespace {

// The access flags of `line`, the token read from its --token-file.
absl::StatusOr<ClientAccessOptions> AccessOptions(const CommandLine& line) {
  ClientAccessOptions access{
      .tls_ca = line.tls_ca, .tls_cert = line.tls_cert, .tls_key = line.tls_key};
  if (!line.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(line.token_file);
    if (!token.ok()) return token.status();
    access.token = *std::move(token);
  }
  return access;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> ConnectExecutor(const CommandLine& line,
                                                          absl::string_view client_name) {
  absl::StatusOr<ClientAccessOptions> access = AccessOptions(line);
  if (!access.ok()) return access.status();
  ExecutorOptions options;
  options.endpoint = line.endpoint;
  options.token = std::move(access->token);
  options.tls_ca = std::move(access->tls_ca);
  options.tls_cert = std::move(access->tls_cert);
  options.tls_key = std::move(access->tls_key);
  options.client_name = std::string(client_name);
  options.connect_timeout = line.connect_timeout;
  return Executor::Connect(std::move(options));
}

absl::StatusOr<ServiceStub> MakeServiceStub(const CommandLine& line) {
  absl::StatusOr<ClientAccessOptions> access = AccessOptions(line);
  if (!access.ok()) return access.status();
  absl::StatusOr<Connection> connection = ResolveConnection(line.endpoint, *access);
  if (!connection.ok()) return connection.status();
  ServiceStub service;
  service.target = connection->target;
  service.token = connection->token;
  service.stub = v1::Gateway::NewStub(grpc::CreateChannel(service.target, connection->credentials));
  return service;
}

}  // namespace mpigate::cli
