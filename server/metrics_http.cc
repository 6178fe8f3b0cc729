#include "server/metrics_http.h"

#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/access.h"

namespace mpigate::server {
namespace {

constexpr size_t kMaxRequestHead = 8 << 10;
constexpr absl::Duration kRequestTimeLimit = absl::Seconds(2);

absl::Status Errno(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Writes all of `bytes`, or gives up on the first error (the scraper went away).
void SendAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
}

std::string Response(absl::string_view status, absl::string_view content_type,
                     absl::string_view body, bool with_body, absl::string_view headers = "") {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(),
                      "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n", headers,
                      "Connection: close\r\n\r\n", with_body ? body : "");
}

// The `token` parameter of a request target's query, percent-decoded, if it has one.
std::optional<std::string> QueryToken(absl::string_view target) {
  const size_t question = target.find('?');
  if (question == absl::string_view::npos) return std::nullopt;
  for (absl::string_view parameter : absl::StrSplit(target.substr(question + 1), '&')) {
    if (!absl::ConsumePrefix(&parameter, "token=")) continue;
    std::string token;
    for (size_t i = 0; i < parameter.size(); ++i) {
      int byte = 0;
      if (parameter[i] == '%' && i + 2 < parameter.size() &&
          absl::SimpleHexAtoi(parameter.substr(i + 1, 2), &byte)) {
        token += static_cast<char>(byte);
        i += 2;
      } else {
        token += parameter[i];
      }
    }
    return token;
  }
  return std::nullopt;
}

// The value of the request head's Authorization header (its name in any case), if it has one.
std::optional<absl::string_view> AuthorizationHeader(absl::string_view head) {
  constexpr absl::string_view kName = "authorization:";
  for (absl::string_view line : absl::StrSplit(head, '\n')) {
    if (line.size() >= kName.size() &&
        absl::EqualsIgnoreCase(line.substr(0, kName.size()), kName)) {
      return absl::StripAsciiWhitespace(line.substr(kName.size()));
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    absl::string_view listen, std::string token,
    absl::flat_hash_map<std::string, HttpResource> resources) {
  if (token.empty()) {
    return absl::InvalidArgumentError("the metrics page needs a bearer token to ask scrapes for");
  }
  std::string host = "127.0.0.1";
  absl::string_view port_text = listen;
  if (const size_t colon = listen.rfind(':'); colon != absl::string_view::npos) {
    host = std::string(listen.substr(0, colon));
    port_text = listen.substr(colon + 1);
    // [::1]:9464 names an IPv6 host.
    if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
      host = host.substr(1, host.size() - 2);
    }
  }
  int port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535 || host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen takes PORT or HOST:PORT (e.g. 9464 or 0.0.0.0:9464), not '",
                     listen, "'"));
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int error = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
      error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen: cannot resolve '", host, "': ", gai_strerror(error)));
  }
  const absl::Cleanup free_found = [found] { freeaddrinfo(found); };
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("metrics socket");
  absl::Cleanup close_fd = [fd] { close(fd); };
  const int yes = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
    return Errno(absl::StrCat("cannot listen for metrics on ", listen));
  }
  if (::listen(fd, 16) != 0) return Errno("metrics listen");
  sockaddr_storage bound = {};
  socklen_t bound_size = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_size) != 0) {
    return Errno("metrics getsockname");
  }
  const int bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int stop_fd = eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) return Errno("metrics eventfd");
  std::move(close_fd).Cancel();
  const std::string shown_host = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(fd, stop_fd, bound_port, absl::StrCat(shown_host, ":", bound_port),
                            std::move(token), std::move(resources)));
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int stop_fd, int port, std::string address,
                                     std::string token,
                                     absl::flat_hash_map<std::string, HttpResource> resources)
    : listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      port_(port),
      address_(std::move(address)),
      token_(std::move(token)),
      resources_(std::move(resources)),
      thread_([this] { Serve(); }) {}

MetricsHttpServer::~MetricsHttpServer() {
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    // An eventfd write fails only when its counter would overflow: it is already signalled.
  }
  thread_.join();
  close(listen_fd_);
  close(stop_fd_);
}

void MetricsHttpServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    const int connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    Answer(connection);
    close(connection);
  }
}

void MetricsHttpServer::Answer(int connection) {
  // Reads the request head: up to the blank line, within the limits.
  std::string head;
  const absl::Time deadline = absl::Now() + kRequestTimeLimit;
  while (!absl::StrContains(head, "\r\n\r\n") && !absl::StrContains(head, "\n\n")) {
    if (head.size() >= kMaxRequestHead) {
      SendAll(connection, Response("431 Request Header Fields Too Large", "text/plain", "", false));
      return;
    }
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd fds[2] = {{connection, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (wait_ms <= 0 || poll(fds, 2, static_cast<int>(wait_ms)) <= 0 || fds[1].revents != 0) {
      return;
    }
    char buffer[2048];
    const ssize_t got = recv(connection, buffer, sizeof(buffer), 0);
    if (got <= 0) return;
    head.append(buffer, static_cast<size_t>(got));
  }
  const std::string first_line = head.substr(0, head.find_first_of("\r\n"));
  const std::vector<absl::string_view> request_line =
      absl::StrSplit(first_line, ' ', absl::SkipEmpty());
  if (request_line.size() != 3 || !absl::StartsWith(request_line[2], "HTTP/1.")) {
    SendAll(connection, Response("400 Bad Request", "text/plain", "bad request\n", true));
    return;
  }
  const absl::string_view method = request_line[0];
  const absl::string_view target = request_line[1];
  const auto resource = resources_.find(target.substr(0, target.find('?')));
  if (resource == resources_.end()) {
    SendAll(connection, Response("404 Not Found", "text/plain",
                                 "mpigate serves its metrics at /metrics and its live page at /\n",
                                 method != "HEAD"));
    return;
  }
  if (method != "GET" && method != "HEAD") {
    SendAll(connection, Response("405 Method Not Allowed\r\nAllow: GET, HEAD", "text/plain",
                                 "GET or HEAD only\n", true));
    return;
  }
  if (!resource->second.public_asset) {
    std::optional<absl::string_view> authorization = AuthorizationHeader(head);
    std::string from_query;
    if (!authorization.has_value()) {
      if (const std::optional<std::string> token = QueryToken(target); token.has_value()) {
        from_query = absl::StrCat("Bearer ", *token);
        authorization = from_query;
      }
    }
    if (absl::Status allowed = CheckBearerToken(authorization, token_); !allowed.ok()) {
      SendAll(
          connection,
          Response("401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"mpigate\"", "text/plain",
                   absl::StrCat(allowed.message(),
                                "; a browser passes it as ?token=TOKEN (the metrics_token= "
                                "line of the service's endpoint file)\n"),
                   method == "GET"));
      return;
    }
  }
  SendAll(connection, Response("200 OK", resource->second.content_type, resource->second.body(),
                               method == "GET", resource->second.headers));
}

}  // namespace mpigate::server
