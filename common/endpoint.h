// Endpoint: how clients find a running mpigate service.
//
// The server listens on a gRPC target (by default a Unix domain socket in a per-user run
// directory) and, once it answers, writes that target into an endpoint file. Clients take their
// target from, in order: an explicit argument, $MPIGATE_ENDPOINT, or the endpoint file
// ($MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint). The run directory is $MPIGATE_RUN_DIR, else
// /tmp/mpigate-<uid>.
//
// The endpoint file (mode 0600) holds the target on its first line, then `key=value` lines:
//   node12:50051
//   token=<the bearer token the service checks on every call; only when it listens on TCP>
//   tls=1                  (only when it serves TLS)
//   metrics=HOST:PORT      (only with --metrics_listen: where it serves its Prometheus metrics)
//   metrics_token=<the bearer token a scrape of its metrics must carry; with metrics=>
// Readers ignore keys they do not know; a service on a Unix socket without metrics writes the
// target alone.
//
// Thread-safety: pure functions over the environment and the file system.
#ifndef MPIGATE_COMMON_ENDPOINT_H_
#define MPIGATE_COMMON_ENDPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate {

// $MPIGATE_RUN_DIR, else /tmp/mpigate-<uid>.
std::string DefaultRunDir();

// $MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint.
std::string DefaultEndpointFile();

// unix:<run dir>/gateway.sock
std::string DefaultListenAddress();

// Turns a --listen value into a gRPC server address: "unix:PATH" as is, "HOST:PORT" as is, a bare
// ":PORT" as "0.0.0.0:PORT". INVALID_ARGUMENT for anything else.
absl::StatusOr<std::string> ListenAddress(absl::string_view listen);

// The socket path of a "unix:PATH" address, or "" for a TCP address.
std::string UnixSocketPath(absl::string_view address);

// What a client needs to know of a service: what an endpoint file says.
struct Endpoint {
  // The gRPC target, e.g. "unix:/tmp/mpigate-1000/gateway.sock" or "node12:50051".
  std::string target;
  // The bearer token the service requires (common/access_token.h); empty: none.
  std::string token;
  // The service speaks TLS.
  bool tls = false;
  // Where it serves its Prometheus metrics (mpigate-server --metrics_listen), HOST:PORT with the
  // port bound (a scraper's discovery, for a port 0 asked for); empty: nowhere.
  std::string metrics;
  // The bearer token its metrics page asks every scrape for (on TCP the service's token unless
  // --metrics_token_file gave another); empty with no metrics.
  std::string metrics_token;
};

// Writes `endpoint` to `path` atomically (a temporary file renamed into place), creating the
// directory if needed, readable only by this user (0600: it may hold the token).
absl::Status WriteEndpointFile(const std::string& path, const Endpoint& endpoint);

// Reads an endpoint file. NOT_FOUND if the file does not exist or holds no target.
absl::StatusOr<Endpoint> ReadEndpointFile(const std::string& path);

// The service a client should connect to: `explicit_target` if non-empty, else $MPIGATE_ENDPOINT
// (neither with a token or TLS), else the default endpoint file. NOT_FOUND, with a message that
// says what to do, if none of them gives one.
absl::StatusOr<Endpoint> ResolveEndpoint(absl::string_view explicit_target);

// Creates `dir` (and parents) if missing; new directories are private to this user (0700).
absl::Status MakeDirectories(const std::string& dir);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_ENDPOINT_H_
