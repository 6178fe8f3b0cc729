// TcpProxy: a TCP forwarder for end-to-end tests of dropped connections. It listens on 127.0.0.1
// (a port the kernel picks) and forwards every connection to an upstream Unix socket, e.g. a
// ServerProcess's; DropAll() cuts every open connection at once, both sides, as a failing network
// would, and later connections are forwarded again.
//
// Thread-safety: Start() and the destructor on one thread; DropAll() and the accessors from any.
// Each connection is pumped by two threads of its own, one per direction, with blocking I/O.
#ifndef MPIGATE_TESTS_TCP_PROXY_H_
#define MPIGATE_TESTS_TCP_PROXY_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mpigate::testing {

class TcpProxy {
 public:
  // Listens and starts forwarding to the Unix socket at `upstream_path`.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(std::string upstream_path);

  // Stops listening, cuts every connection and joins every thread.
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // The gRPC target that reaches the proxy, "127.0.0.1:PORT".
  const std::string& target() const { return target_; }

  // Cuts every connection open now; returns how many it cut.
  int DropAll();

  // Connections accepted so far.
  int accepted() const;

  // Blocks until `count` connections have been accepted in all.
  void AwaitAccepted(int count) const;

 private:
  struct Connection {
    int client_fd = -1;
    int upstream_fd = -1;
    std::thread to_upstream;
    std::thread to_client;
  };

  TcpProxy(int listen_fd, std::string upstream_path, std::string target);
  void AcceptLoop();
  // Closes the connection's sockets once both pumps have ended.
  static void Join(Connection& connection);

  const int listen_fd_;
  const std::string upstream_path_;
  const std::string target_;
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_TCP_PROXY_H_
