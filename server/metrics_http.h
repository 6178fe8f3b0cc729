// MetricsHttpServer: serves the service's metrics to Prometheus, `GET /metrics` over HTTP/1.1.
//
// Opt-in: mpigate-server --metrics_listen=[HOST:]PORT. A scrape every few seconds is all it is
// for, so one thread answers one request per connection, in turn, and closes it: no keep-alive,
// no concurrency, a 2 s limit on reading a request, 8 KiB of request head at most. Anything but
// GET (or HEAD) of /metrics gets 404 or 405. Every scrape must carry a bearer token, as
// Prometheus sends it (`authorization: {credentials_file: ...}` in a scrape config): one without
// `Authorization: Bearer <token>` gets 401. A TCP port is open to every local user even when it
// is bound to loopback, so there is no token-less mode, whoever may call the service itself.
//
// Thread-safety: Start() and the destructor on one thread; `render` is called on the server's
// own thread, once per scrape, and should not hold the service's locks while it formats.
#ifndef MPIGATE_SERVER_METRICS_HTTP_H_
#define MPIGATE_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpigate::server {

class MetricsHttpServer {
 public:
  // Listens on `listen`: "PORT" (on 127.0.0.1) or "HOST:PORT" (e.g. 0.0.0.0:9464 for every
  // interface); port 0 picks a free one (see port()). `token`: the bearer token each scrape must
  // carry (INVALID_ARGUMENT if empty). `render` makes the page's body.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      absl::string_view listen, std::string token, std::function<std::string()> render);

  // Stops the thread; a scrape in progress is cut off.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The port it listens on, and "HOST:PORT" as given with that port.
  int port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  MetricsHttpServer(int listen_fd, int stop_fd, int port, std::string address, std::string token,
                    std::function<std::string()> render);

  void Serve();
  void Answer(int connection);

  const int listen_fd_;
  // An eventfd the destructor writes to wake Serve() out of poll.
  const int stop_fd_;
  const int port_;
  const std::string address_;
  const std::string token_;
  const std::function<std::string()> render_;
  std::thread thread_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_METRICS_HTTP_H_
