// Tests of MetricsHttpServer on a real socket: what it answers to scrapes and to anything else.
#include "server/metrics_http.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/http_exchange.h"

namespace mpigate::server {
namespace {

using ::mpigate::testing::ConnectToLocalPort;
using ::mpigate::testing::HttpExchange;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kToken[] = "scrape-token-0123456789";
// The request head's line that carries it, as Prometheus sends it.
constexpr char kAuthorization[] = "Authorization: Bearer scrape-token-0123456789\r\n";

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start("0", kToken, [this] {
          ++renders_;
          return std::string("mpigate_workers 2\n");
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::atomic<int> renders_{0};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, GetMetricsAnswersTheRenderedTextOnEachScrape) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
  for (int scrape = 1; scrape <= 2; ++scrape) {
    const std::string answer = HttpExchange(
        server_->port(),
        absl::StrCat("GET /metrics HTTP/1.1\r\nHost: localhost\r\n", kAuthorization, "\r\n"));
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(answer, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    EXPECT_THAT(answer, HasSubstr("Content-Length: 18\r\n"));
    EXPECT_THAT(answer, EndsWith("\r\n\r\nmpigate_workers 2\n"));
    EXPECT_EQ(renders_, scrape);
  }
  // A query string is allowed (Prometheus adds none, some tools do).
  EXPECT_THAT(HttpExchange(server_->port(),
                           absl::StrCat("GET /metrics?x=1 HTTP/1.0\r\n", kAuthorization, "\r\n")),
              StartsWith("HTTP/1.1 200 OK\r\n"));
}

TEST_F(MetricsHttpServerTest, HeadHasNoBody) {
  const std::string answer = HttpExchange(
      server_->port(), absl::StrCat("HEAD /metrics HTTP/1.1\r\n", kAuthorization, "\r\n"));
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(answer, HasSubstr("Content-Length: 18\r\n"));
  EXPECT_THAT(answer, EndsWith("\r\n\r\n"));
}

TEST_F(MetricsHttpServerTest, OtherPathsMethodsAndGarbageGetTheirErrors) {
  EXPECT_THAT(HttpExchange(server_->port(), "GET / HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_THAT(HttpExchange(server_->port(), "DELETE /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"));
  EXPECT_THAT(HttpExchange(server_->port(), "hello\n\n"),
              StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(HttpExchange(server_->port(), std::string(9000, 'a')),
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  EXPECT_EQ(renders_, 0);
}

TEST_F(MetricsHttpServerTest, AClientThatSendsNothingDoesNotHoldUpTheNext) {
  // A connection that never sends a request is given up after the request time limit; the next
  // scrape is answered after it.
  const int silent = ConnectToLocalPort(server_->port());
  EXPECT_THAT(HttpExchange(server_->port(),
                           absl::StrCat("GET /metrics HTTP/1.1\r\n", kAuthorization, "\r\n")),
              StartsWith("HTTP/1.1 200 OK\r\n"));
  close(silent);
}

TEST(MetricsHttpServerTokenTest, EveryScrapeMustCarryTheToken) {
  std::atomic<int> renders = 0;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("0", kToken, [&renders] {
        ++renders;
        return std::string("mpigate_workers 2\n");
      });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const std::string missing = HttpExchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(missing, StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  EXPECT_THAT(missing, HasSubstr("WWW-Authenticate: Bearer realm=\"mpigate\"\r\n"));
  EXPECT_THAT(missing, HasSubstr("missing token"));
  const std::string wrong = HttpExchange(
      port, "GET /metrics HTTP/1.1\r\nAuthorization: Bearer not-the-token-at-all\r\n\r\n");
  EXPECT_THAT(wrong, StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  EXPECT_THAT(wrong, HasSubstr("wrong token"));
  EXPECT_EQ(renders, 0);
  // As Prometheus sends it; the header's name in any case.
  for (const char* header : {"Authorization", "authorization"}) {
    const std::string answer =
        HttpExchange(port, absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\n", header,
                                        ": Bearer scrape-token-0123456789\r\n\r\n"));
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK\r\n")) << header;
    EXPECT_THAT(answer, EndsWith("\r\n\r\nmpigate_workers 2\n"));
  }
  EXPECT_EQ(renders, 2);
}

TEST(MetricsHttpServerStartTest, BadAddressesAreRefused) {
  const auto render = [] { return std::string(); };
  for (const char* listen :
       {"", "x", "127.0.0.1:", "127.0.0.1:99999", ":80:x", "no.such.host.invalid:0"}) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start(listen, kToken, render);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
}

// No page without a token: its port is open to every local user, whoever may call the service.
TEST(MetricsHttpServerStartTest, AnEmptyTokenIsRefused) {
  EXPECT_EQ(MetricsHttpServer::Start("0", "", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mpigate::server
