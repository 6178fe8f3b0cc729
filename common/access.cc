#include "common/access.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/endpoint.h"

namespace mpigate {
namespace {

constexpr size_t kTokenBytes = 32;
constexpr size_t kMinTokenLength = 16;
constexpr absl::string_view kBearer = "Bearer ";

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// Equal in time that depends on the lengths only (which are no secret), not on where the bytes
// differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size() || b.empty()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", what, " ", path, ": ", std::strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[kTokenBytes];
  size_t filled = 0;
  while (filled < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + filled, sizeof(bytes) - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadWholeFile(path, "token file");
  if (!content.ok()) return content.status();
  const std::string token(absl::StripAsciiWhitespace(content->substr(0, content->find('\n'))));
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token in ", path, " is shorter than ", kMinTokenLength, " characters"));
  }
  for (const char c : token) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && !absl::StrContains("._~+/=-", c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the token in ", path, " may hold only letters, digits and ._~+/=- characters"));
    }
  }
  return token;
}

absl::Status CheckBearerToken(std::optional<absl::string_view> authorization,
                              absl::string_view expected) {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "missing token: this service requires `authorization: Bearer <token>` metadata on every "
        "call; the token is in its endpoint file (or set MPIGATE_TOKEN)");
  }
  absl::string_view value = *authorization;
  // The scheme is case-insensitive (RFC 7235).
  if (value.size() < kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected `Bearer <token>`");
  }
  value.remove_prefix(kBearer.size());
  if (!ConstantTimeEquals(value, expected)) {
    return absl::UnauthenticatedError("wrong token: not the one this service was started with");
  }
  return absl::OkStatus();
}

void AttachToken(grpc::ClientContext& context, absl::string_view token) {
  if (token.empty()) return;
  context.AddMetadata(kAuthorizationKey, absl::StrCat(kBearer, token));
}

absl::StatusOr<std::string> ReadPem(const std::string& path_or_pem, absl::string_view what) {
  if (absl::StrContains(path_or_pem, "-----BEGIN")) return path_or_pem;
  absl::StatusOr<std::string> pem = ReadWholeFile(path_or_pem, what);
  if (!pem.ok()) return pem.status();
  if (!absl::StrContains(*pem, "-----BEGIN")) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path_or_pem, " holds no PEM"));
  }
  return pem;
}

absl::StatusOr<Connection> ResolveConnection(absl::string_view explicit_target,
                                             const ClientAccessOptions& options) {
  absl::StatusOr<Endpoint> endpoint = ResolveEndpoint(explicit_target);
  if (!endpoint.ok()) return endpoint.status();
  Connection connection;
  connection.target = endpoint->target;
  connection.token = !options.token.empty()          ? options.token
                     : !Env("MPIGATE_TOKEN").empty() ? Env("MPIGATE_TOKEN")
                                                     : endpoint->token;
  const std::string ca = !options.tls_ca.empty() ? options.tls_ca : Env("MPIGATE_TLS_CA");
  const std::string cert = !options.tls_cert.empty() ? options.tls_cert : Env("MPIGATE_TLS_CERT");
  const std::string key = !options.tls_key.empty() ? options.tls_key : Env("MPIGATE_TLS_KEY");
  connection.tls = endpoint->tls || !ca.empty();
  if (!connection.tls) {
    connection.credentials = grpc::InsecureChannelCredentials();
    return connection;
  }
  grpc::SslCredentialsOptions ssl;
  if (!ca.empty()) {
    absl::StatusOr<std::string> pem = ReadPem(ca, "TLS CA certificate");
    if (!pem.ok()) return pem.status();
    ssl.pem_root_certs = *std::move(pem);
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs its key, and a key its "
        "certificate (tls_cert/tls_key, MPIGATE_TLS_CERT/_KEY)");
  }
  if (!cert.empty()) {
    absl::StatusOr<std::string> cert_pem = ReadPem(cert, "TLS client certificate");
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadPem(key, "TLS client key");
    if (!key_pem.ok()) return key_pem.status();
    ssl.pem_cert_chain = *std::move(cert_pem);
    ssl.pem_private_key = *std::move(key_pem);
  }
  connection.credentials = grpc::SslCredentials(ssl);
  return connection;
}

}  // namespace mpigate
