// Access control shared by the service and its clients: the bearer token a service on TCP
// requires on every call, and the channel credentials (plaintext or TLS) a client dials with.
//
// The token travels as call metadata, `authorization: Bearer <token>`, added to each call's
// ClientContext rather than through gRPC call credentials, which gRPC refuses to attach to an
// insecure channel. On plain TCP it therefore crosses the network in clear text: between nodes,
// serve TLS (mpigate-server --tls-cert/--tls-key) so that the token and the data are encrypted.
//
// Thread-safety: pure functions (over the environment and the file system).
#ifndef MPIGATE_COMMON_ACCESS_H_
#define MPIGATE_COMMON_ACCESS_H_

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate {

// The metadata key that carries the token (lower case, as gRPC requires).
inline constexpr char kAuthorizationKey[] = "authorization";

// A fresh token: 32 bytes from the kernel's random source (getrandom), in hex.
absl::StatusOr<std::string> NewToken();

// Reads a token from a file (its first line, whitespace stripped). INVALID_ARGUMENT if it is
// empty, shorter than 16 characters, or holds characters outside [A-Za-z0-9._~+/=-].
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Checks the value of a call's `authorization` metadata (nullopt: the call had none) against
// `expected`, in time independent of where they differ. UNAUTHENTICATED, saying whether the
// token was missing or wrong, unless it is `Bearer <expected>`.
absl::Status CheckBearerToken(std::optional<absl::string_view> authorization,
                              absl::string_view expected);

// Adds `authorization: Bearer <token>` to a call; nothing for an empty token.
void AttachToken(grpc::ClientContext& context, absl::string_view token);

// PEM text given as itself (it holds "-----BEGIN") or as the path of a file holding it.
absl::StatusOr<std::string> ReadPem(const std::string& path_or_pem, absl::string_view what);

// How a client authenticates and encrypts; empty fields fall back on the environment.
struct ClientAccessOptions {
  // The bearer token. Empty: $MPIGATE_TOKEN, else the endpoint file's when the target came from
  // it.
  std::string token;
  // PEM (path or text) of the CA that signed the service's certificate; given, the client speaks
  // TLS. Empty: $MPIGATE_TLS_CA; if neither, TLS only when the endpoint file says so, verified
  // against the system's roots.
  std::string tls_ca;
  // A client certificate and its key (PEM, path or text), for a service that requires one
  // (--tls-client-ca). Empty: $MPIGATE_TLS_CERT and $MPIGATE_TLS_KEY.
  std::string tls_cert;
  std::string tls_key;
};

// A service resolved for dialing.
struct Connection {
  std::string target;
  // Attach to every call (AttachToken); empty: none.
  std::string token;
  bool tls = false;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Resolves the service (common/endpoint.h's ResolveEndpoint) and its credentials. NOT_FOUND if
// no endpoint is known; INVALID_ARGUMENT or NOT_FOUND for unreadable PEM, or a certificate
// without its key.
absl::StatusOr<Connection> ResolveConnection(absl::string_view explicit_target,
                                             const ClientAccessOptions& options);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_ACCESS_H_
