// Access control end to end, against a real server: the Unix socket is its owner's only; on TCP
// every Gateway call needs the bearer token of the endpoint file (health checks and reflection do
// not); TLS with trusted and untrusted certificates, and client certificates
// (tests/shell/make_test_certs.sh).
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "standard_services/health.grpc.pb.h"
#include "standard_services/reflection.grpc.pb.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::mpigate::testing::RunCommand;
using ::mpigate::testing::ServerProcess;

std::unique_ptr<v1::Gateway::Stub> PlainStub(const std::string& target) {
  return v1::Gateway::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

// GetPoolStatus with `authorization` metadata of `authorization` (none if empty).
grpc::Status CallPoolStatus(v1::Gateway::Stub& stub, const std::string& authorization) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
  v1::PoolStatus status;
  return stub.GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status);
}

void ExpectEcho(Executor& executor) {
  absl::StatusOr<std::string> result = executor.Submit("echo", "hello").Result();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, "hello");
}

// Clients take nothing from the environment of whoever runs the tests.
class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"MPIGATE_ENDPOINT", "MPIGATE_ENDPOINT_FILE", "MPIGATE_TOKEN",
                             "MPIGATE_TLS_CA", "MPIGATE_TLS_CERT", "MPIGATE_TLS_KEY"}) {
      unsetenv(name);
    }
  }
};

TEST_F(AccessTest, UnixSocketAndEndpointFileAreOwnerOnly) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  ASSERT_EQ(server.target().rfind("unix:", 0), 0u);
  const std::string socket_path = server.target().substr(5);
  struct stat info;
  ASSERT_EQ(stat(socket_path.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0600);
  EXPECT_EQ(info.st_uid, getuid());
  ASSERT_EQ(stat(server.endpoint_file().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
  // No token on a Unix socket: the permissions decide.
  EXPECT_EQ(server.token(), "");
  EXPECT_TRUE(CallPoolStatus(*PlainStub(server.target()), "").ok());
  ASSERT_TRUE(server.Stop().ok());
}

TEST_F(AccessTest, TcpRequiresTheTokenOnEveryCall) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--listen=127.0.0.1:0"}}).ok());
  ASSERT_EQ(server.target().rfind("127.0.0.1:", 0), 0u) << server.target();
  ASSERT_GE(server.token().size(), 32u);
  auto stub = PlainStub(server.target());

  const grpc::Status missing = CallPoolStatus(*stub, "");
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("missing token"), std::string::npos)
      << missing.error_message();
  const grpc::Status wrong = CallPoolStatus(*stub, "Bearer not-the-token-at-all");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(wrong.error_message().find("wrong token"), std::string::npos) << wrong.error_message();
  const grpc::Status malformed = CallPoolStatus(*stub, server.token());
  EXPECT_EQ(malformed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(CallPoolStatus(*stub, "Bearer " + server.token()).ok());

  // Health stays open, so that load balancers and schedulers can probe without the token; it
  // tells only whether the pool serves.
  {
    auto health = grpc::health::v1::Health::NewStub(
        grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status checked =
        health->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    ASSERT_TRUE(checked.ok()) << checked.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // Reflection, which tells only the public schema, needs no token either (gRPC's library serves
  // it on every listener); the Gateway it describes does.
  {
    auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(
        grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    auto stream = reflection->ServerReflectionInfo(&context);
    grpc::reflection::v1alpha::ServerReflectionRequest request;
    request.set_list_services("");
    ASSERT_TRUE(stream->Write(request));
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse response;
    ASSERT_TRUE(stream->Read(&response));
    std::vector<std::string> services;
    for (const auto& service : response.list_services_response().service()) {
      services.push_back(service.name());
    }
    EXPECT_THAT(services, ::testing::Contains("mpigate.v1.Gateway"));
    EXPECT_TRUE(stream->Finish().ok());
  }

  // StopService is checked too: the server keeps serving.
  {
    grpc::ClientContext context;
    v1::StopServiceResponse response;
    EXPECT_EQ(stub->StopService(&context, v1::StopServiceRequest(), &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // The Session stream: the executor's Connect fails with the service's answer.
  absl::StatusOr<std::unique_ptr<Executor>> refused =
      Executor::Connect({.endpoint = server.target(), .token = "wrong-token-0123456789"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();
  absl::StatusOr<std::unique_ptr<Executor>> anonymous =
      Executor::Connect({.endpoint = server.target()});
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();

  // The right token, given explicitly, from $MPIGATE_TOKEN, or from the endpoint file.
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(), .token = server.token()});
    ASSERT_TRUE(executor.ok()) << executor.status();
    ExpectEcho(**executor);
    EXPECT_TRUE((*executor)->ListFunctions().ok());
  }
  {
    setenv("MPIGATE_TOKEN", server.token().c_str(), 1);
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target()});
    unsetenv("MPIGATE_TOKEN");
    ASSERT_TRUE(executor.ok()) << executor.status();
    ExpectEcho(**executor);
  }
  {
    setenv("MPIGATE_ENDPOINT_FILE", server.endpoint_file().c_str(), 1);
    absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect();
    unsetenv("MPIGATE_ENDPOINT_FILE");
    ASSERT_TRUE(executor.ok()) << executor.status();
    ExpectEcho(**executor);
  }
  ASSERT_TRUE(server.Stop().ok());
}

TEST_F(AccessTest, TokenFileGivesTheToken) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/token");
  ASSERT_EQ(RunCommand("printf 'shared-job-token-0123456789\\n' > " + path)->exit_code, 0);
  ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 1, .flags = {"--listen=127.0.0.1:0", "--token-file=" + path}}).ok());
  EXPECT_EQ(server.token(), "shared-job-token-0123456789");
  EXPECT_TRUE(
      CallPoolStatus(*PlainStub(server.target()), "Bearer shared-job-token-0123456789").ok());
  ASSERT_TRUE(server.Stop().ok());
}

// The certificates of tests/shell/make_test_certs.sh: a CA, a server certificate for localhost and
// 127.0.0.1, a client certificate it signed, and a second CA that signed nothing of ours.
class TlsTest : public AccessTest {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = new std::string(absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tls"));
    absl::StatusOr<testing::CommandResult> made =
        RunCommand(absl::StrCat(testing::RunfilePath("tests/shell/make_test_certs"), " ", *dir_));
    ASSERT_TRUE(made.ok()) << made.status();
    ASSERT_EQ(made->exit_code, 0) << made->output;
  }

  static std::string File(const std::string& name) { return *dir_ + "/" + name; }

  static std::vector<std::string> TlsFlags(bool require_client_certificate) {
    std::vector<std::string> flags = {"--listen=127.0.0.1:0", "--tls-cert=" + File("server.pem"),
                                      "--tls-key=" + File("server.key")};
    if (require_client_certificate) flags.push_back("--tls-client-ca=" + File("ca.pem"));
    return flags;
  }

  // GetPoolStatus over TLS with the service's token, trusting `ca`, with a client certificate
  // if `client` is given.
  static grpc::Status CallOverTls(const ServerProcess& server, const std::string& ca,
                                  const std::string& client = "") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadPem(File(ca));
    if (!client.empty()) {
      ssl.pem_cert_chain = ReadPem(File(client + ".pem"));
      ssl.pem_private_key = ReadPem(File(client + ".key"));
    }
    auto stub =
        v1::Gateway::NewStub(grpc::CreateChannel(server.target(), grpc::SslCredentials(ssl)));
    return CallPoolStatus(*stub, "Bearer " + server.token());
  }

  static std::string ReadPem(const std::string& path) {
    absl::StatusOr<testing::CommandResult> read = RunCommand("cat " + path);
    return read.ok() ? read->output : "";
  }

  static std::string* dir_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, TrustedCaConnectsUntrustedCaFailsTheHandshake) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = TlsFlags(false)}).ok());

  EXPECT_TRUE(CallOverTls(server, "ca.pem").ok());
  const grpc::Status untrusted = CallOverTls(server, "other_ca.pem");
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE) << untrusted.error_message();
  // A plaintext client does not get through either.
  EXPECT_EQ(CallPoolStatus(*PlainStub(server.target()), "Bearer " + server.token()).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // The executor: TLS because the endpoint file says so, verified against the CA it is given.
  {
    setenv("MPIGATE_ENDPOINT_FILE", server.endpoint_file().c_str(), 1);
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.tls_ca = File("ca.pem")});
    ASSERT_TRUE(executor.ok()) << executor.status();
    ExpectEcho(**executor);
    absl::StatusOr<std::unique_ptr<Executor>> refused =
        Executor::Connect({.tls_ca = File("other_ca.pem"), .connect_timeout = absl::Seconds(2)});
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
    unsetenv("MPIGATE_ENDPOINT_FILE");
  }
  ASSERT_TRUE(server.Stop().ok());
}

TEST_F(TlsTest, ClientCertificateRequiredWhenAsked) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = TlsFlags(true)}).ok());

  EXPECT_TRUE(CallOverTls(server, "ca.pem", "client").ok());
  const grpc::Status anonymous = CallOverTls(server, "ca.pem");
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAVAILABLE) << anonymous.error_message();
  {
    absl::StatusOr<std::unique_ptr<Executor>> executor =
        Executor::Connect({.endpoint = server.target(),
                           .token = server.token(),
                           .tls_ca = File("ca.pem"),
                           .tls_cert = File("client.pem"),
                           .tls_key = File("client.key")});
    ASSERT_TRUE(executor.ok()) << executor.status();
    ExpectEcho(**executor);
  }
  ASSERT_TRUE(server.Stop().ok());
}

}  // namespace
}  // namespace mpigate
