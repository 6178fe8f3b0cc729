#include "tests/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mpigate::testing {
namespace {

// Copies bytes from `from` to `to` until either side ends, then shuts both down so that the pump
// of the other direction ends too.
void Pump(int from, int to) {
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = recv(from, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t written = 0;
    while (written < n) {
      // MSG_NOSIGNAL: a peer gone must end the pump, not raise SIGPIPE in the test process.
      const ssize_t w = send(to, buffer + written, static_cast<size_t>(n - written), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      written += w;
    }
    if (written < n) break;
  }
  shutdown(from, SHUT_RDWR);
  shutdown(to, SHUT_RDWR);
}

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(std::string upstream_path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 16) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const absl::Status status = Errno("listening on 127.0.0.1");
    close(fd);
    return status;
  }
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(
      fd, std::move(upstream_path), absl::StrCat("127.0.0.1:", ntohs(address.sin_port))));
  TcpProxy* self = proxy.get();
  proxy->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  return proxy;
}

TcpProxy::TcpProxy(int listen_fd, std::string upstream_path, std::string target)
    : listen_fd_(listen_fd), upstream_path_(std::move(upstream_path)), target_(std::move(target)) {}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Wakes the blocked accept().
  shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  close(listen_fd_);
  DropAll();
}

void TcpProxy::AcceptLoop() {
  for (;;) {
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // The listening socket was shut down.
    }
    const int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, upstream_path_.c_str(), sizeof(address.sun_path) - 1);
    if (upstream < 0 ||
        connect(upstream, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      if (upstream >= 0) close(upstream);
      close(client);
      continue;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_unique<Connection>();
    connection->client_fd = client;
    connection->upstream_fd = upstream;
    connection->to_upstream = std::thread(Pump, client, upstream);
    connection->to_client = std::thread(Pump, upstream, client);
    absl::MutexLock lock(&mu_);
    ++accepted_;
    connections_.push_back(std::move(connection));
    if (stopping_) return;
  }
}

int TcpProxy::DropAll() {
  std::vector<std::unique_ptr<Connection>> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped.swap(connections_);
  }
  int open = 0;
  for (const std::unique_ptr<Connection>& connection : dropped) {
    // A connection whose pumps already ended (its peer closed it) is not open any more; probing
    // its socket tells. Either way shutting both sockets down ends the pumps.
    char probe;
    const ssize_t n = recv(connection->client_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) ++open;
    shutdown(connection->client_fd, SHUT_RDWR);
    shutdown(connection->upstream_fd, SHUT_RDWR);
  }
  for (const std::unique_ptr<Connection>& connection : dropped) Join(*connection);
  return open;
}

void TcpProxy::Join(Connection& connection) {
  connection.to_upstream.join();
  connection.to_client.join();
  close(connection.client_fd);
  close(connection.upstream_fd);
}

int TcpProxy::accepted() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

void TcpProxy::AwaitAccepted(int count) const {
  const auto reached = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return accepted_ >= count;
  };
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&reached));
}

}  // namespace mpigate::testing
