// Tests of MetricsHttpServer on a real socket: what it answers to scrapes and to anything else.
#include "server/metrics_http.h"

#include <unistd.h>

#include <atomic>
#include <functional>
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
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kToken[] = "scrape-token-0123456789";
// The request head's line that carries it, as Prometheus sends it.
constexpr char kAuthorization[] = "Authorization: Bearer scrape-token-0123456789\r\n";

// /metrics served by `render`.
absl::flat_hash_map<std::string, HttpResource> MetricsAt(std::function<std::string()> render) {
  absl::flat_hash_map<std::string, HttpResource> resources;
  resources["/metrics"] = {.content_type = "text/plain; version=0.0.4; charset=utf-8",
                           .body = std::move(render)};
  return resources;
}

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start("0", kToken, MetricsAt([this] {
                                   ++renders_;
                                   return std::string("mpigate_workers 2\n");
                                 }));
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
      MetricsHttpServer::Start("0", kToken, MetricsAt([&renders] {
                                 ++renders;
                                 return std::string("mpigate_workers 2\n");
                               }));
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
        MetricsHttpServer::Start(listen, kToken, MetricsAt(render));
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << listen;
  }
}

// No page without a token: its port is open to every local user, whoever may call the service.
TEST(MetricsHttpServerStartTest, AnEmptyTokenIsRefused) {
  EXPECT_EQ(
      MetricsHttpServer::Start("0", "", MetricsAt([] { return std::string(); })).status().code(),
      absl::StatusCode::kInvalidArgument);
}

// A browser cannot send the header when it opens a URL: the token comes as a query parameter
// (percent-encoded or not), and only resources marked public are served without it.
TEST(MetricsHttpServerTokenTest, TheTokenMayComeInTheQueryAndPublicAssetsNeedNone) {
  absl::flat_hash_map<std::string, HttpResource> resources =
      MetricsAt([] { return std::string("mpigate_workers 2\n"); });
  resources["/"] = {.content_type = "text/html; charset=utf-8",
                    .body = [] { return std::string("<p>pool</p>"); },
                    .headers = "Content-Security-Policy: default-src 'none'\r\n"};
  resources["/live.js"] = {.content_type = "text/javascript",
                           .body = [] { return std::string("'use strict';"); },
                           .public_asset = true};
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("0", kToken, std::move(resources));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  for (const char* target :
       {"/?token=scrape-token-0123456789", "/?x=1&token=scrape%2Dtoken-0123456789&y=2"}) {
    const std::string page = HttpExchange(port, absl::StrCat("GET ", target, " HTTP/1.1\r\n\r\n"));
    EXPECT_THAT(page, StartsWith("HTTP/1.1 200 OK\r\n")) << target;
    EXPECT_THAT(page, HasSubstr("Content-Security-Policy: default-src 'none'\r\n"));
    EXPECT_THAT(page, EndsWith("\r\n\r\n<p>pool</p>"));
  }
  for (const char* target : {"/", "/?token=", "/?token=scrape-token-012345678", "/?tok=x"}) {
    const std::string refused =
        HttpExchange(port, absl::StrCat("GET ", target, " HTTP/1.1\r\n\r\n"));
    EXPECT_THAT(refused, StartsWith("HTTP/1.1 401 Unauthorized\r\n")) << target;
    EXPECT_THAT(refused, HasSubstr("?token=TOKEN")) << target;
    EXPECT_THAT(refused, Not(HasSubstr("<p>pool</p>"))) << target;
  }
  EXPECT_THAT(HttpExchange(port, "GET /metrics?token=scrape-token-0123456789 HTTP/1.1\r\n\r\n"),
              EndsWith("\r\n\r\nmpigate_workers 2\n"));
  EXPECT_THAT(HttpExchange(port, "GET /live.js HTTP/1.1\r\n\r\n"),
              EndsWith("\r\n\r\n'use strict';"));
  EXPECT_THAT(HttpExchange(port, "GET /other HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404 Not Found\r\n"));
}

}  // namespace
}  // namespace mpigate::server
