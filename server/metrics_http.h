// MetricsHttpServer: the service's HTTP/1.1 port: Prometheus metrics at `GET /metrics`, and the
// live page (server/live_page) with its JSON and assets; what it serves is a table of resources
// by path.
//
// Opt-in: mpigate-server --metrics_listen=[HOST:]PORT. A scrape every few seconds and a page that
// asks once a second are all it is for, so one thread answers one request per connection, in
// turn, and closes it: no keep-alive, no concurrency, a 2 s limit on reading a request, 8 KiB of
// request head at most. A path it does not have gets 404; anything but GET (or HEAD) gets 405.
// Every request for the pool's figures must carry the bearer token: `Authorization: Bearer
// <token>`, as Prometheus sends it (`authorization: {credentials_file: ...}` in a scrape
// config), or, for a browser, which cannot send that header when it opens a URL, a `token` query
// parameter (`/?token=...`); without it, 401. A TCP port is open to every local user even when it
// is bound to loopback, so there is no token-less mode, whoever may call the service itself. Only
// resources marked public (the page's script and style: the same bytes for every service, built
// into the binary) are served without it.
//
// Thread-safety: Start() and the destructor on one thread; a resource's `body` is called on the
// server's own thread, once per request, and should not hold the service's locks while it
// formats.
#ifndef MPIGATE_SERVER_METRICS_HTTP_H_
#define MPIGATE_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate::server {

// What the server answers at one path.
struct HttpResource {
  // Its Content-Type.
  std::string content_type;
  // Makes its body, on the server's thread, once per GET or HEAD.
  std::function<std::string()> body;
  // Header lines added to its 200 answer, each ending in "\r\n" (e.g. a Content-Security-Policy).
  std::string headers;
  // Served without the token: only for bytes that say nothing of the service.
  bool public_asset = false;
};

class MetricsHttpServer {
 public:
  // Listens on `listen`: "PORT" (on 127.0.0.1) or "HOST:PORT" (e.g. 0.0.0.0:9464 for every
  // interface); port 0 picks a free one (see port()). `token`: the bearer token each request must
  // carry (INVALID_ARGUMENT if empty). `resources`: what it serves, by path (e.g. "/metrics").
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      absl::string_view listen, std::string token,
      absl::flat_hash_map<std::string, HttpResource> resources);

  // Stops the thread; a scrape in progress is cut off.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The port it listens on, and "HOST:PORT" as given with that port.
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  MetricsHttpServer(int listen_fd, int stop_fd, int port, std::string address, std::string token,
                    absl::flat_hash_map<std::string, HttpResource> resources);

  void Serve();
  void Answer(int connection);

  const int listen_fd_;
  // An eventfd the destructor writes to wake Serve() out of poll.
  const int stop_fd_;
  const int port_;
  const std::string address_;
  const std::string token_;
  const absl::flat_hash_map<std::string, HttpResource> resources_;
  std::thread thread_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_METRICS_HTTP_H_
