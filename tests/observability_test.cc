// End-to-end tests of what lets people and tools watch a running service: the standard health
// service (seen flipping from NOT_SERVING while booting, to SERVING, to NOT_SERVING while
// draining), server reflection, Prometheus metrics scraped over HTTP and parsed, and the event
// log with its level flag. Each against a real mpigate-server.

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "standard_services/health.grpc.pb.h"
#include "standard_services/reflection.grpc.pb.h"
#include "tests/http_exchange.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::mpigate::testing::HttpExchange;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

HealthCheckResponse::ServingStatus Check(grpc::health::v1::Health::Stub& health,
                                         const std::string& service,
                                         grpc::Status* status = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status call = health.Check(&context, request, &response);
  if (status != nullptr) *status = call;
  return call.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
}

TEST(HealthTest, NotServingWhileBootingThenServingThenNotServingWhileDraining) {
  testing::ServerProcess server;
  // The initializer holds the pool in BOOTING while the test looks at it.
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--initializer=sleep", "--initargs=1500"},
                          .await_ready = false})
                  .ok());
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(channel);

  EXPECT_EQ(Check(*health, ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(*health, "mpigate.v1.Gateway"), HealthCheckResponse::NOT_SERVING);
  grpc::Status unknown;
  Check(*health, "no.such.Service", &unknown);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);

  // Watch sees the pool come up, and later the drain.
  grpc::ClientContext watch_context;
  HealthCheckRequest whole_server;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> watch =
      health->Watch(&watch_context, whole_server);
  HealthCheckResponse seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::NOT_SERVING);
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(*health, "mpigate.v1.Gateway"), HealthCheckResponse::SERVING);

  // A running task keeps the drain going while the test looks.
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "health test"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  Future sleeper = (*executor)->Submit("sleep", "60000");
  ASSERT_TRUE(sleeper.WaitStarted());
  std::unique_ptr<v1::Gateway::Stub> gateway = v1::Gateway::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::StopServiceRequest request;
    request.set_reason("health test");
    v1::StopServiceResponse response;
    ASSERT_TRUE(gateway->StopService(&context, request, &response).ok());
  }
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(*health, ""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(*health, "mpigate.v1.Gateway"), HealthCheckResponse::NOT_SERVING);

  // Let the drain end.
  EXPECT_TRUE(sleeper.Interrupt());
  EXPECT_TRUE(sleeper.Wait());
  watch_context.TryCancel();
  (*executor).reset();
  absl::StatusOr<testing::ServerExit> exit = server.Stop(/*signal_number=*/0);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// One request on a reflection stream, and its answer.
grpc::reflection::v1alpha::ServerReflectionResponse Reflect(
    grpc::reflection::v1alpha::ServerReflection::Stub& reflection,
    const grpc::reflection::v1alpha::ServerReflectionRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = reflection.ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  EXPECT_TRUE(stream->Write(request));
  EXPECT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Read(&response));
  grpc::reflection::v1alpha::ServerReflectionResponse after_last;
  EXPECT_FALSE(stream->Read(&after_last)) << "one answer per request";
  EXPECT_TRUE(stream->Finish().ok());
  return response;
}

TEST(ReflectionTest, ListsServicesAndDescribesTheGateway) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  std::unique_ptr<grpc::reflection::v1alpha::ServerReflection::Stub> reflection =
      grpc::reflection::v1alpha::ServerReflection::NewStub(
          grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));

  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("*");
  const auto listed = Reflect(*reflection, list);
  std::vector<std::string> services;
  for (const auto& service : listed.list_services_response().service()) {
    services.push_back(service.name());
  }
  EXPECT_THAT(services, Contains("mpigate.v1.Gateway"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));

  grpc::reflection::v1alpha::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("mpigate.v1.Gateway");
  const auto described = Reflect(*reflection, describe);
  ASSERT_GT(described.file_descriptor_response().file_descriptor_proto_size(), 0)
      << described.DebugString();
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(described.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "mpigate/v1/gateway.proto");
  ASSERT_EQ(file.service_size(), 1);
  std::vector<std::string> methods;
  for (const auto& method : file.service(0).method()) methods.push_back(method.name());
  EXPECT_THAT(methods, Contains("Session"));
  EXPECT_THAT(methods, Contains("Run"));

  // The frames between the gateway and its workers are internal: reflection does not know them,
  // by symbol or by file, so that nobody builds on them.
  grpc::reflection::v1alpha::ServerReflectionRequest internal_symbol;
  internal_symbol.set_file_containing_symbol("mpigate.wire.TaskFrame");
  EXPECT_EQ(Reflect(*reflection, internal_symbol).error_response().error_code(),
            static_cast<int>(grpc::StatusCode::NOT_FOUND));
  grpc::reflection::v1alpha::ServerReflectionRequest internal_file;
  internal_file.set_file_by_filename("wire/frames.proto");
  EXPECT_EQ(Reflect(*reflection, internal_file).error_response().error_code(),
            static_cast<int>(grpc::StatusCode::NOT_FOUND));

  ASSERT_TRUE(server.Stop().ok());
}

// The port of a server's metrics, which it was asked to pick (--metrics_listen=127.0.0.1:0) and
// names in its endpoint file; 0 if it names none.
int MetricsPort(const testing::ServerProcess& server) {
  const std::string& address = server.metrics_address();
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) return 0;
  return port;
}

// A scrape in the Prometheus text format, parsed: each sample's value by its name and labels as
// written ("name{a=\"b\"}"). Fails the test on a line that is not a comment or a sample.
std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# HELP ") || absl::StartsWith(line, "# TYPE ")) continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(space != absl::string_view::npos &&
                absl::SimpleAtod(line.substr(space + 1), &value))
        << "not a sample: " << line;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

// A scrape of the server's metrics with the token its endpoint file names: the whole answer.
std::string Scrape(const testing::ServerProcess& server) {
  return HttpExchange(MetricsPort(server),
                      absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ",
                                   server.metrics_token(), "\r\n\r\n"));
}

// The body of an answer that must be a 200.
std::string Body(const std::string& answer) {
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
  const size_t body_at = answer.find("\r\n\r\n");
  return body_at == std::string::npos ? "" : answer.substr(body_at + 4);
}

// On TCP the scrape, like every Gateway call, needs the service's token (a Prometheus scrape
// config's `authorization: {credentials_file: ...}`).
TEST(MetricsTest, OnTcpAScrapeNeedsTheServicesToken) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server
          .Start({.workers = 1, .flags = {"--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"}})
          .ok());
  const int port = MetricsPort(server);
  ASSERT_GT(port, 0) << server.metrics_address();
  ASSERT_FALSE(server.token().empty());
  // The endpoint file names it for scrapers too.
  EXPECT_EQ(server.metrics_token(), server.token());
  EXPECT_THAT(HttpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  const std::string answer =
      HttpExchange(port, absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ",
                                      server.token(), "\r\n\r\n"));
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(answer, HasSubstr("\nmpigate_workers 1\n"));
  ASSERT_TRUE(server.Stop().ok());
}

// On a Unix socket nobody but the service's user can call it, and its metrics, on a TCP port
// that every local user can reach, are just as private: the page asks for a token of its own,
// which the service writes to its endpoint file (0600) for its user's tools.
TEST(MetricsTest, OnAUnixSocketAScrapeNeedsTheTokenFromTheEndpointFile) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--metrics_listen=127.0.0.1:0"}}).ok());
  ASSERT_TRUE(absl::StartsWith(server.target(), "unix:")) << server.target();
  const int port = MetricsPort(server);
  ASSERT_GT(port, 0) << server.metrics_address();
  EXPECT_THAT(HttpExchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  EXPECT_THAT(HttpExchange(port,
                           "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                           "Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 401 Unauthorized\r\n"));
  ASSERT_GE(server.metrics_token().size(), 32u);
  EXPECT_THAT(Body(Scrape(server)), HasSubstr("\nmpigate_workers 1\n"));
  ASSERT_TRUE(server.Stop().ok());
}

// --metrics_token_file gives the token (the same after a restart, for a scraper's credentials
// file); without --metrics_listen it is a usage error.
TEST(MetricsTest, AMetricsTokenFileGivesTheTokenAScrapeMustCarry) {
  const std::string token_file = ::testing::TempDir() + "/metrics.token";
  {
    std::ofstream out(token_file);
    out << "my-scrape-token-0123456789\n";
  }
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 1,
                          .flags = {"--metrics_listen=127.0.0.1:0",
                                    absl::StrCat("--metrics-token-file=", token_file)}})
                  .ok());
  EXPECT_EQ(server.metrics_token(), "my-scrape-token-0123456789");
  EXPECT_THAT(Body(Scrape(server)), HasSubstr("\nmpigate_workers 1\n"));
  ASSERT_TRUE(server.Stop().ok());

  testing::ServerProcess unused;
  const absl::Status refused =
      unused.Start({.workers = 1, .flags = {absl::StrCat("--metrics-token-file=", token_file)}});
  EXPECT_THAT(refused.message(), HasSubstr("--metrics_token_file needs --metrics_listen"));
}

// The function="..." label values of a page, each once.
std::set<std::string> FunctionLabels(const std::string& body) {
  std::set<std::string> labels;
  const std::string label = "{function=\"";
  for (size_t at = body.find(label); at != std::string::npos; at = body.find(label, at)) {
    at += label.size();
    labels.insert(body.substr(at, body.find('"', at) - at));
  }
  return labels;
}

// A function name is a label only for a function the pool has. Names a client makes up are
// counted without one: queued while the pool starts, under function="other" (they fail once it
// is ready); sent after, as refusals by code. So the page stays the same size whatever clients
// send, and a name of the pool's submitted while it starts is counted under its own label.
TEST(MetricsTest, MadeUpFunctionNamesBeforeAndAfterReadyDoNotGrowThePage) {
  testing::ServerProcess server;
  // The initializer holds the pool in BOOTING while the first names arrive.
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--metrics_listen=127.0.0.1:0", "--initializer=sleep",
                                    "--initargs=3000"},
                          .await_ready = false})
                  .ok());
  constexpr int kNames = 2000;
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .client_name = "made-up names"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  std::vector<Future> early;
  for (int i = 0; i < kNames; ++i) {
    early.push_back((*executor)->Submit(absl::StrCat("made.up.early.", i), "x"));
  }
  Future echo = (*executor)->Submit("echo", "known");
  v1::PoolStatus seen;
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [&seen](const v1::PoolStatus& status) {
                seen = status;
                return status.queued_tasks() == kNames + 1 ||
                       status.state() != v1::POOL_STATE_BOOTING;
              }).ok());
  ASSERT_EQ(seen.state(), v1::POOL_STATE_BOOTING) << "the pool was up before the names arrived";
  const std::string booting = Body(Scrape(server));
  EXPECT_THAT(FunctionLabels(booting), ::testing::ElementsAre("other"));

  for (const Future& future : early) {
    EXPECT_EQ(future.Exception().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(echo.Result().value_or(""), "known");
  std::vector<Future> late;
  for (int i = 0; i < kNames; ++i) {
    late.push_back((*executor)->Submit(absl::StrCat("made.up.late.", i), "x"));
  }
  for (const Future& future : late) {
    EXPECT_EQ(future.Exception().code(), absl::StatusCode::kNotFound);
  }

  const std::string body = Body(Scrape(server));
  std::map<std::string, double> samples = ParseSamples(body);
  EXPECT_EQ(samples["mpigate_tasks_accepted_total{function=\"other\"}"], kNames);
  EXPECT_EQ(samples["mpigate_tasks_ended_total{function=\"other\",state=\"failed\"}"], kNames);
  EXPECT_EQ(samples["mpigate_tasks_accepted_total{function=\"echo\"}"], 1);
  EXPECT_EQ(samples["mpigate_tasks_ended_total{function=\"echo\",state=\"succeeded\"}"], 1);
  EXPECT_EQ(samples["mpigate_tasks_rejected_total{code=\"NOT_FOUND\"}"], kNames);
  // The labels: the pool's functions and "other", nothing else.
  std::unique_ptr<v1::Gateway::Stub> gateway = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::PoolStatus status;
  ASSERT_TRUE(gateway->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  std::set<std::string> expected = {"other"};
  for (const v1::FunctionInfo& function : status.functions()) expected.insert(function.name());
  EXPECT_EQ(FunctionLabels(body), expected);
  // Some 60 lines of at most ~120 bytes per label, and a few gauges.
  EXPECT_LT(body.size(), 8192 * expected.size()) << "a page of " << body.size() << " bytes";
  (*executor).reset();
  ASSERT_TRUE(server.Stop().ok());
}

TEST(MetricsTest, ScrapeCountsTasksByFunctionAndOutcomeWithBytesAndHistograms) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--metrics_listen=127.0.0.1:0"}}).ok());
  const int port = MetricsPort(server);
  ASSERT_GT(port, 0) << server.metrics_address();
  constexpr int kEchoes = 50;
  const std::string payload(100, 'x');
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .client_name = "metrics test"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    std::vector<Future> echoes;
    for (int i = 0; i < kEchoes; ++i) echoes.push_back((*executor)->Submit("echo", payload));
    for (const Future& echo : echoes) ASSERT_TRUE(echo.Result().ok());
    EXPECT_EQ((*executor)->Submit("fail", "on purpose").Exception().code(),
              absl::StatusCode::kUnknown);
    EXPECT_EQ((*executor)->Submit("no.such.function", "").Exception().code(),
              absl::StatusCode::kNotFound);
  }

  const std::string answer = Scrape(server);
  ASSERT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200 OK\r\n")) << answer;
  EXPECT_THAT(answer, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  const size_t body_at = answer.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  const std::string body = answer.substr(body_at + 4);
  EXPECT_THAT(body, HasSubstr("# TYPE mpigate_tasks_ended_total counter\n"));
  EXPECT_THAT(body, HasSubstr("# TYPE mpigate_task_run_seconds histogram\n"));
  std::map<std::string, double> samples = ParseSamples(body);

  EXPECT_EQ(samples["mpigate_workers"], 2);
  EXPECT_EQ(samples["mpigate_workers_busy"], 0);
  EXPECT_EQ(samples["mpigate_pool_state{state=\"ready\"}"], 1);
  EXPECT_EQ(samples["mpigate_pool_state{state=\"booting\"}"], 0);
  EXPECT_EQ(samples["mpigate_tasks_accepted_total{function=\"echo\"}"], kEchoes);
  EXPECT_EQ(samples["mpigate_tasks_ended_total{function=\"echo\",state=\"succeeded\"}"], kEchoes);
  EXPECT_EQ(samples["mpigate_tasks_ended_total{function=\"echo\",state=\"failed\"}"], 0);
  EXPECT_EQ(samples["mpigate_tasks_ended_total{function=\"fail\",state=\"failed\"}"], 1);
  EXPECT_EQ(samples["mpigate_tasks_rejected_total{code=\"NOT_FOUND\"}"], 1);
  EXPECT_EQ(samples["mpigate_task_payload_bytes_total{function=\"echo\"}"],
            kEchoes * payload.size());
  EXPECT_EQ(samples["mpigate_task_result_bytes_total{function=\"echo\"}"],
            kEchoes * payload.size());
  EXPECT_GT(samples["mpigate_tasks_per_second"], 0);
  for (const char* histogram : {"mpigate_task_queue_wait_seconds", "mpigate_task_run_seconds"}) {
    const std::string labels = "{function=\"echo\"";
    EXPECT_EQ(samples[absl::StrCat(histogram, "_count", labels, "}")], kEchoes) << histogram;
    EXPECT_EQ(samples[absl::StrCat(histogram, "_bucket", labels, ",le=\"+Inf\"}")], kEchoes);
    double largest_finite = 0;
    for (const auto& [name, value] : samples) {
      if (!absl::StartsWith(name, absl::StrCat(histogram, "_bucket", labels))) continue;
      if (absl::StrContains(name, "+Inf")) continue;
      EXPECT_LE(value, kEchoes) << name;
      largest_finite = std::max(largest_finite, value);
    }
    EXPECT_GT(largest_finite, 0) << histogram << ": no finite bucket holds a no-op task";
  }

  // The same rate reaches GetPoolStatus.
  {
    std::unique_ptr<v1::Gateway::Stub> gateway = v1::Gateway::NewStub(
        grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::PoolStatus status;
    ASSERT_TRUE(gateway->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
    EXPECT_GT(status.recent_tasks_per_second(), 0);
    EXPECT_EQ(status.tasks_succeeded(), kEchoes);
    EXPECT_EQ(status.tasks_failed(), 1);
  }

  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "GET /other HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 404 Not Found\r\n"));
  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "POST /metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_TRUE(absl::StartsWith(HttpExchange(port, "nonsense\r\n\r\n"), "HTTP/1.1 400 Bad Request"));
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LogTest, OneLinePerEventAtInfoAndRunCallsOnlyAtDebug) {
  for (const bool debug : {false, true}) {
    SCOPED_TRACE(debug ? "--log_level=debug" : "default level");
    testing::ServerProcess server;
    std::vector<std::string> flags;
    if (debug) flags.push_back("--log_level=debug");
    ASSERT_TRUE(server.Start({.workers = 2, .flags = flags}).ok());
    {
      absl::StatusOr<std::unique_ptr<Executor>> executor =
          Executor::Connect({.endpoint = server.target(), .client_name = "log test"});
      ASSERT_TRUE(executor.ok()) << executor.status();
      ASSERT_TRUE((*executor)->Submit("echo", "x").Result().ok());
    }
    {
      std::unique_ptr<v1::Gateway::Stub> gateway = v1::Gateway::NewStub(
          grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
      grpc::ClientContext context;
      v1::RunRequest run;
      run.mutable_task()->set_function("echo");
      v1::TaskOutcome outcome;
      ASSERT_TRUE(gateway->Run(&context, run, &outcome).ok());
    }
    absl::StatusOr<testing::ServerExit> exit = server.Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    const std::string& log = exit->stderr_text;
    EXPECT_THAT(log, HasSubstr(" INFO mpigate-server: worker 0 up on "));
    EXPECT_THAT(log, HasSubstr(" INFO mpigate-server: worker 1 up on "));
    EXPECT_THAT(log, HasSubstr(" INFO mpigate-server: ready: 2 workers"));
    EXPECT_THAT(log, HasSubstr("session 1 opened by \"log test\""));
    EXPECT_THAT(log, HasSubstr("session 1 closed"));
    EXPECT_THAT(log, HasSubstr(" INFO mpigate-server: stopping (SIGTERM), draining"));
    EXPECT_THAT(log, HasSubstr(" INFO mpigate-server: stopped cleanly"));
    if (debug) {
      EXPECT_THAT(log, HasSubstr(" DEBUG mpigate-server: Run call (session 2) ended "
                                 "TASK_STATE_SUCCEEDED"));
    } else {
      EXPECT_THAT(log, Not(HasSubstr("DEBUG")));
    }
    // Every line is one whole event: a timestamp, a level, the program.
    for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      if (!absl::StartsWith(line, "20")) continue;  // Open MPI's own output, if any.
      EXPECT_THAT(std::string(line),
                  ::testing::MatchesRegex("[0-9T:.-]+Z (DEBUG|INFO|WARNING|ERROR) "
                                          "mpigate-server: .+"));
    }
  }
}

TEST(LogTest, QuietAtWarningAndABadLevelIsAUsageError) {
  {
    testing::ServerProcess server;
    ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--log_level=warning"}}).ok());
    absl::StatusOr<testing::ServerExit> exit = server.Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(exit->exit_code, 0);
    EXPECT_THAT(exit->stderr_text, Not(HasSubstr(" INFO ")));
  }
  testing::ServerProcess server;
  const absl::Status started = server.Start({.workers = 1, .flags = {"--log_level=loud"}});
  ASSERT_FALSE(started.ok());
  EXPECT_THAT(std::string(started.message()),
              HasSubstr("a log level is debug, info, warning or error, not 'loud'"));
}

}  // namespace
}  // namespace mpigate
