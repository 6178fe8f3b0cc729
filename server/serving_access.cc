#include "server/serving_access.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/access.h"
#include "common/endpoint.h"
#include "common/program_files.h"

namespace mpigate::server {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(
    const ServerConfig& config) {
  grpc::SslServerCredentialsOptions ssl(
      config.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                   : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  absl::StatusOr<std::string> cert_pem = ReadPem(config.tls_cert, "--tls-cert");
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPem(config.tls_key, "--tls-key");
  if (!key_pem.ok()) return key_pem.status();
  ssl.pem_key_cert_pairs.push_back({*std::move(key_pem), *std::move(cert_pem)});
  if (!config.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPem(config.tls_client_ca, "--tls-client-ca");
    if (!ca_pem.ok()) return ca_pem.status();
    ssl.pem_root_certs = *std::move(ca_pem);
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<ServingAccess> MakeServingAccess(const ServerConfig& config) {
  ServingAccess access;
  access.credentials = grpc::InsecureServerCredentials();
  if (config.socket_path.empty()) {
    absl::StatusOr<std::string> token =
        config.token_file.empty() ? NewToken() : ReadTokenFile(config.token_file);
    if (!token.ok()) return token.status();
    access.token = *std::move(token);
    if (!config.tls_cert.empty()) {
      absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> tls = TlsCredentials(config);
      if (!tls.ok()) return tls.status();
      access.tls = true;
      access.credentials = *std::move(tls);
    }
  }
  if (!config.metrics_listen.empty()) {
    absl::StatusOr<std::string> metrics_token =
        !config.metrics_token_file.empty() ? ReadTokenFile(config.metrics_token_file)
        : !access.token.empty()            ? absl::StatusOr<std::string>(access.token)
                                           : NewToken();
    if (!metrics_token.ok()) return metrics_token.status();
    access.metrics_token = *std::move(metrics_token);
  }
  return access;
}

absl::Status ClaimUnixSocket(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path is longer than ",
                                                   sizeof(address.sun_path) - 1, " bytes: ", path));
  }
  if (absl::Status status = MakeDirectories(DirectoryOf(path)); !status.ok()) return status;
  if (access(path.c_str(), F_OK) != 0) return absl::OkStatus();
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool live =
      fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  if (fd >= 0) close(fd);
  if (live) {
    return absl::FailedPreconditionError(
        absl::StrCat("another server is already listening on ", path));
  }
  if (unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove stale socket ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status MakeSocketPrivate(const std::string& path) {
  if (chmod(path.c_str(), 0600) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot make ", path, " private: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string ClientTarget(const std::string& address, int bound_port) {
  if (absl::StartsWith(address, "unix:")) return address;
  std::string host = address.substr(0, address.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? name : "localhost";
  }
  return absl::StrCat(host, ":", bound_port);
}

}  // namespace mpigate::server
