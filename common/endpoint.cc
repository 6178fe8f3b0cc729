#include "common/endpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mpigate {
namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? std::string(value) : fallback;
}

absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

std::string DefaultRunDir() {
  return EnvOr("MPIGATE_RUN_DIR", absl::StrCat("/tmp/mpigate-", getuid()));
}

std::string DefaultEndpointFile() {
  return EnvOr("MPIGATE_ENDPOINT_FILE", DefaultRunDir() + "/endpoint");
}

std::string DefaultListenAddress() {
  return absl::StrCat("unix:", DefaultRunDir(), "/gateway.sock");
}

absl::StatusOr<std::string> ListenAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:")) {
    if (listen.size() == 5) return absl::InvalidArgumentError("--listen unix: needs a path");
    return std::string(listen);
  }
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen must be unix:PATH, HOST:PORT or :PORT, got '", listen, "'"));
  }
  if (colon == 0) return absl::StrCat("0.0.0.0", listen);
  return std::string(listen);
}

std::string UnixSocketPath(absl::string_view address) {
  return absl::StartsWith(address, "unix:") ? std::string(address.substr(5)) : std::string();
}

absl::Status MakeDirectories(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  struct stat info;
  if (stat(dir.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    if (absl::Status status = MakeDirectories(dir.substr(0, slash)); !status.ok()) return status;
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus("cannot create", dir);
  return absl::OkStatus();
}

absl::Status WriteEndpointFile(const std::string& path, const Endpoint& endpoint) {
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) {
    if (absl::Status status = MakeDirectories(path.substr(0, slash)); !status.ok()) return status;
  }
  const std::string temporary = absl::StrCat(path, ".tmp.", getpid());
  std::string content = absl::StrCat(endpoint.target, "\n");
  if (!endpoint.token.empty()) absl::StrAppend(&content, "token=", endpoint.token, "\n");
  if (endpoint.tls) absl::StrAppend(&content, "tls=1\n");
  if (!endpoint.metrics.empty()) absl::StrAppend(&content, "metrics=", endpoint.metrics, "\n");
  if (!endpoint.metrics_token.empty()) {
    absl::StrAppend(&content, "metrics_token=", endpoint.metrics_token, "\n");
  }
  {
    // Created 0600 whatever the umask: the file may hold the token.
    const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("cannot create", temporary);
    const bool written = fchmod(fd, 0600) == 0 && write(fd, content.data(), content.size()) ==
                                                      static_cast<ssize_t>(content.size());
    const absl::Status status = written ? absl::OkStatus() : ErrnoStatus("cannot write", temporary);
    close(fd);
    if (!status.ok()) {
      std::remove(temporary.c_str());
      return status;
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const absl::Status status = ErrnoStatus("cannot rename into", path);
    std::remove(temporary.c_str());
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<Endpoint> ReadEndpointFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no endpoint file at ", path));
  std::stringstream content;
  content << in.rdbuf();
  Endpoint endpoint;
  bool first = true;
  for (absl::string_view line : absl::StrSplit(content.str(), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    if (first) {
      endpoint.target = std::string(line);
      first = false;
    } else if (absl::ConsumePrefix(&line, "token=")) {
      endpoint.token = std::string(line);
    } else if (absl::ConsumePrefix(&line, "tls=")) {
      endpoint.tls = line == "1";
    } else if (absl::ConsumePrefix(&line, "metrics=")) {
      endpoint.metrics = std::string(line);
    } else if (absl::ConsumePrefix(&line, "metrics_token=")) {
      endpoint.metrics_token = std::string(line);
    }
  }
  if (endpoint.target.empty()) {
    return absl::NotFoundError(absl::StrCat("endpoint file ", path, " is empty"));
  }
  return endpoint;
}

absl::StatusOr<Endpoint> ResolveEndpoint(absl::string_view explicit_target) {
  if (!explicit_target.empty()) return Endpoint{std::string(explicit_target)};
  const std::string from_env = EnvOr("MPIGATE_ENDPOINT", "");
  if (!from_env.empty()) return Endpoint{from_env};
  const std::string file = DefaultEndpointFile();
  absl::StatusOr<Endpoint> target = ReadEndpointFile(file);
  if (!target.ok()) {
    return absl::NotFoundError(
        absl::StrCat("no mpigate service found: ", target.status().message(),
                     ". Start mpigate-server, or set MPIGATE_ENDPOINT or MPIGATE_ENDPOINT_FILE"));
  }
  return target;
}

}  // namespace mpigate
