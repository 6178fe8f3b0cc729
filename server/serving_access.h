// Who may reach the gRPC service and its metrics, and where: the token and TLS credentials from
// ServerConfig's files, the Unix socket claimed and made private, the target clients dial.
//
// On TCP every call carries a token (the --token-file's, else a fresh random one) and TLS is
// optional; on a Unix socket the socket's permissions (0600, in a 0700 directory) decide.
//
// Thread-safety: functions of the main thread; they read and change the file system.
#ifndef MPIGATE_SERVER_SERVING_ACCESS_H_
#define MPIGATE_SERVER_SERVING_ACCESS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/server_config.h"

namespace mpigate::server {

struct ServingAccess {
  // Required on every call of the Gateway service; empty on a Unix socket.
  std::string token;
  bool tls = false;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // What every scrape of the metrics must carry: --metrics_token_file's, else the service's (on
  // TCP), else a fresh one (the metrics' TCP port is open to every local user); empty without
  // metrics.
  std::string metrics_token;
};

// Reads the token and PEM files `config` names, or makes fresh tokens.
absl::StatusOr<ServingAccess> MakeServingAccess(const ServerConfig& config);

// Makes `path` free for a new Unix socket (its directory made 0700 if missing): fails if a live
// server listens there, removes a stale socket file left by one that died.
absl::Status ClaimUnixSocket(const std::string& path);

// gRPC binds a socket with the process's umask: this makes it 0600.
absl::Status MakeSocketPrivate(const std::string& path);

// The target clients should dial for a server listening on `address` (port as bound): the host's
// name for a wildcard address.
std::string ClientTarget(const std::string& address, int bound_port);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_SERVING_ACCESS_H_
