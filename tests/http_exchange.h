// HttpExchange: one plain HTTP request to a port on 127.0.0.1 and the whole answer, for tests of
// the metrics endpoint.
//
// Thread-safety: a pure function over a socket of its own.
#ifndef MPIGATE_TESTS_HTTP_EXCHANGE_H_
#define MPIGATE_TESTS_HTTP_EXCHANGE_H_

#include <string>

namespace mpigate::testing {

// Connects to 127.0.0.1:`port`, sends `request` as it is, and reads until the server closes the
// connection. Records a test failure if it cannot connect or send.
std::string HttpExchange(int port, const std::string& request);

// Connects to 127.0.0.1:`port` and returns the socket (a failure is recorded if it cannot).
int ConnectToLocalPort(int port);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_HTTP_EXCHANGE_H_
