// Endpoint: how clients find a running mpigate service.
//
// The server listens on a gRPC target (by default a Unix domain socket in a per-user run
// directory) and, once it answers, writes that target into an endpoint file. Clients take their
// target from, in order: an explicit argument, $MPIGATE_ENDPOINT, or the endpoint file
// ($MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint). The run directory is $MPIGATE_RUN_DIR, else
// /tmp/mpigate-<uid>.
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

// Writes `target` to `path` atomically (a temporary file renamed into place), creating the
// directory if needed, readable only by this user.
absl::Status WriteEndpointFile(const std::string& path, absl::string_view target);

// Reads the target from an endpoint file. NOT_FOUND if the file does not exist.
absl::StatusOr<std::string> ReadEndpointFile(const std::string& path);

// The target a client should connect to: `explicit_target` if non-empty, else $MPIGATE_ENDPOINT,
// else the default endpoint file's content. NOT_FOUND, with a message that says what to do, if
// none of them gives one.
absl::StatusOr<std::string> ResolveEndpoint(absl::string_view explicit_target);

// Creates `dir` (and parents) if missing; new directories are private to this user (0700).
absl::Status MakeDirectories(const std::string& dir);

}  // namespace mpigate

#endif  // MPIGATE_COMMON_ENDPOINT_H_
