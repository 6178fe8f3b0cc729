// The gateway's gRPC edge against careless and hostile callers, end to end on a real pool: calls
// without the token are refused before their request is read (the gateway's peak memory stays
// put however large the request), refusals do not flood the log, request bytes that do not parse
// fail their call or stream with INVALID_ARGUMENT, unary calls take exactly one message, and
// connections that carry no call are closed.
//
// Messages go as bytes through the call machinery the generated stubs use, so that a test can
// send what no stub would.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::mpigate::testing::ServerProcess;

constexpr char kSessionMethod[] = "/mpigate.v1.Gateway/Session";
constexpr char kPoolStatusMethod[] = "/mpigate.v1.Gateway/GetPoolStatus";

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer Bytes(const google::protobuf::Message& message) {
  return Bytes(message.SerializeAsString());
}

// Not a message of any kind: field 1, length-delimited, longer than what follows.
constexpr char kJunk[] =
    "\x0a\x7f"
    "not a protobuf message";

std::shared_ptr<grpc::Channel> Channel(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
}

// A call whose deadline keeps a test that waits for the wrong thing from hanging.
void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
}

// A unary call that sends `request` as it is.
grpc::Status UnaryCall(grpc::Channel& channel, const std::string& method,
                       const grpc::ByteBuffer& request, const std::string& token = "") {
  grpc::ClientContext context;
  SetDeadline(context);
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::ByteBuffer response;
  return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      &channel, grpc::internal::RpcMethod(method.c_str(), grpc::internal::RpcMethod::NORMAL_RPC),
      &context, request, &response);
}

// A method called as a stream of bytes, whatever its kind: sends `requests`, half-closes, reads
// whatever comes and returns the call's status.
grpc::Status StreamCall(grpc::Channel& channel, const std::string& method,
                        const std::vector<grpc::ByteBuffer>& requests) {
  grpc::ClientContext context;
  SetDeadline(context);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          &channel,
          grpc::internal::RpcMethod(method.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING),
          &context));
  for (const grpc::ByteBuffer& request : requests) stream->Write(request);
  stream->WritesDone();
  for (grpc::ByteBuffer response; stream->Read(&response);) {
  }
  return stream->Finish();
}

// The peak resident memory of process `pid` so far (VmHWM), in bytes; -1 if unknown.
int64_t PeakResidentBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (!absl::StartsWith(line, "VmHWM:")) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtoi(fields[1], &kib)) return kib << 10;
  }
  return -1;
}

// The port of a "HOST:PORT" target.
int Port(const std::string& target) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(target.substr(target.rfind(':') + 1), &port)) << target;
  return port;
}

// A TCP connection to 127.0.0.1:`port`.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

// Reads and drops what the peer sends until it closes the connection (true) or `limit` passes
// (false).
bool AwaitPeerClose(int fd, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  char buffer[4096];
  for (absl::Time now = absl::Now(); now < deadline; now = absl::Now()) {
    pollfd readable = {.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(deadline - now) + 1)) <= 0) {
      continue;
    }
    const ssize_t got = read(fd, buffer, sizeof(buffer));
    if (got == 0 || (got < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

// Clients take nothing from the environment of whoever runs the tests.
class EdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"MPIGATE_ENDPOINT", "MPIGATE_ENDPOINT_FILE", "MPIGATE_TOKEN"}) {
      unsetenv(name);
    }
  }
};

// Four callers without the token send 200 MiB requests at once, each on a connection of its own.
// The gateway answers UNAUTHENTICATED without reading them: its peak memory grows by less than a
// third of one request. (Before, gRPC read every request whole before the token was
// checked: the peak grew by 600 MiB and more.) The token's holder is then served as before.
TEST_F(EdgeTest, LargeCallsWithoutTheTokenAreRefusedBeforeTheirRequestIsRead) {
  ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 1, .flags = {"--listen=127.0.0.1:0", "--max_message_mb=1024"}})
          .ok());
  const int64_t peak_before = PeakResidentBytes(server.pid());
  ASSERT_GT(peak_before, 0);

  // Three Run calls, and a Session whose first message is as large (Session has always been
  // checked before its first read).
  constexpr int kCallers = 4;
  constexpr size_t kPayloadBytes = size_t{200} << 20;
  v1::RunRequest request;
  request.mutable_task()->set_function("echo");
  request.mutable_task()->mutable_payload()->assign(kPayloadBytes, 'x');
  v1::SessionRequest submit;
  *submit.mutable_submit()->add_tasks() = request.task();
  std::vector<grpc::Status> statuses(kCallers);
  {
    std::vector<std::thread> callers;
    for (int i = 0; i < kCallers; ++i) {
      callers.emplace_back([&, i] {
        // A channel each: separate connections, as separate hostile clients would use.
        grpc::ChannelArguments arguments;
        arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        auto stub = v1::Gateway::NewStub(grpc::CreateCustomChannel(
            server.target(), grpc::InsecureChannelCredentials(), arguments));
        grpc::ClientContext context;
        SetDeadline(context);
        if (i == kCallers - 1) {
          auto stream = stub->Session(&context);
          stream->Write(submit);
          statuses[i] = stream->Finish();
          return;
        }
        v1::TaskOutcome outcome;
        statuses[i] = stub->Run(&context, request, &outcome);
      });
    }
    for (std::thread& caller : callers) caller.join();
  }
  for (const grpc::Status& status : statuses) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  }
  const int64_t peak_after = PeakResidentBytes(server.pid());
  std::printf("the gateway's peak resident memory: %lld MiB before the calls, %lld MiB after\n",
              static_cast<long long>(peak_before >> 20), static_cast<long long>(peak_after >> 20));
  // 9 MiB in the opt build, about 21 MiB under ASan; 600 MiB and more when requests were read.
  EXPECT_LT(peak_after - peak_before, int64_t{64} << 20)
      << "the gateway's peak resident memory went from " << (peak_before >> 20) << " to "
      << (peak_after >> 20) << " MiB";

  // With the token, a Run call's request is read, run and answered.
  auto stub = v1::Gateway::NewStub(Channel(server.target()));
  grpc::ClientContext context;
  SetDeadline(context);
  context.AddMetadata("authorization", "Bearer " + server.token());
  v1::RunRequest echo;
  echo.mutable_task()->set_function("echo");
  echo.mutable_task()->set_payload(std::string(1 << 20, 'y'));
  echo.mutable_task()->set_task_id(7);
  v1::TaskOutcome outcome;
  const grpc::Status ran = stub->Run(&context, echo, &outcome);
  ASSERT_TRUE(ran.ok()) << ran.error_message();
  EXPECT_EQ(outcome.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(outcome.result(), echo.task().payload());
  EXPECT_EQ(outcome.task_id(), 7u);
  ASSERT_TRUE(server.Stop().ok());
}

// 20,000 calls without the token, as fast as one client makes them: each is refused, and the log
// holds at most 10 refusal lines per 10 s (and a line counting the rest), not one per call.
TEST_F(EdgeTest, RefusedCallsDoNotFloodTheLog) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1, .flags = {"--listen=127.0.0.1:0"}}).ok());
  auto channel = Channel(server.target());
  constexpr int kCalls = 20000;
  const absl::Time start = absl::Now();
  int refused = 0;
  for (int i = 0; i < kCalls; ++i) {
    refused +=
        UnaryCall(*channel, kPoolStatusMethod, Bytes(v1::GetPoolStatusRequest())).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED;
  }
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(refused, kCalls);
  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(exit->stderr_text, '\n')) {
    lines += absl::StrContains(line, "refused");
  }
  // Each 10 s interval begun during the calls: 10 lines and one summary.
  const int intervals = static_cast<int>(elapsed / absl::Seconds(10)) + 1;
  EXPECT_GT(lines, 0);
  EXPECT_LE(lines, 11 * intervals) << "in " << elapsed;
  std::printf("%d refused calls in %s: %d lines of log about them\n", kCalls,
              absl::FormatDuration(elapsed).c_str(), lines);
}

// Unary calls are exactly one request message: none or two fail the call with INTERNAL (as
// gRPC's protocol has it), and a method the service does not have is UNIMPLEMENTED.
TEST_F(EdgeTest, UnaryCallsTakeExactlyOneRequestThatParses) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  auto channel = Channel(server.target());
  EXPECT_TRUE(UnaryCall(*channel, kPoolStatusMethod, Bytes(v1::GetPoolStatusRequest())).ok());
  // Bytes that do not parse: e2e_test's MalformedRequestBytesAreRejectedAndTheServerGoesOn.

  const grpc::Status none = StreamCall(*channel, kPoolStatusMethod, {});
  EXPECT_EQ(none.error_code(), grpc::StatusCode::INTERNAL) << none.error_message();
  const grpc::Status two =
      StreamCall(*channel, kPoolStatusMethod,
                 {Bytes(v1::GetPoolStatusRequest()), Bytes(v1::GetPoolStatusRequest())});
  EXPECT_EQ(two.error_code(), grpc::StatusCode::INTERNAL) << two.error_message();

  const grpc::Status unknown = UnaryCall(*channel, "/mpigate.v1.Gateway/Nothing", Bytes(""));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNIMPLEMENTED) << unknown.error_message();
  ASSERT_TRUE(server.Stop().ok());
}

// Bytes that do not parse after `open` end the stream with INVALID_ARGUMENT, as any bad request
// does: the session is ended, its running task interrupted. (Before, gRPC took them for a
// half-close and the client waited for the outcome of a task it thought it had sent.)
TEST_F(EdgeTest, SessionRequestThatDoesNotParseFailsTheStream) {
  ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 1}).ok());
  auto channel = Channel(server.target());
  grpc::ClientContext context;
  SetDeadline(context);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel.get(),
          grpc::internal::RpcMethod(kSessionMethod, grpc::internal::RpcMethod::BIDI_STREAMING),
          &context));
  v1::SessionRequest open;
  open.mutable_open()->set_client_name("junk");
  ASSERT_TRUE(stream->Write(Bytes(open)));
  v1::SessionRequest submit;
  v1::TaskSpec& task = *submit.mutable_submit()->add_tasks();
  task.set_task_id(1);
  task.set_function("sleep");
  task.set_payload("600000");
  ASSERT_TRUE(stream->Write(Bytes(submit)));
  ASSERT_TRUE(testing::AwaitBusyWorkers(server.target(), 1).ok());

  stream->Write(Bytes(kJunk));
  for (grpc::ByteBuffer event; stream->Read(&event);) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(status.error_message(), "the request does not parse as mpigate.v1.SessionRequest");
  EXPECT_TRUE(testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& pool) {
                return pool.sessions() == 0 && pool.busy_workers() == 0;
              }).ok());
  ASSERT_TRUE(server.Stop().ok());
}

// A connection that never finishes opening (no HTTP/2 preface) is closed after
// --handshake_timeout, one that opened and carries no call after --max_connection_idle. A
// client's session stream keeps its connection, and a client whose idle connection was closed
// connects again for its next call.
TEST_F(EdgeTest, ConnectionsThatCarryNoCallAreClosed) {
  ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 1,
                          .flags = {"--listen=127.0.0.1:0", "--max_connection_idle=1s",
                                    "--handshake_timeout=1s"}})
                  .ok());
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = server.target(), .token = server.token()});
  ASSERT_TRUE(executor.ok()) << executor.status();
  ASSERT_TRUE((*executor)->Submit("echo", "before").Result().ok());
  auto stub = v1::Gateway::NewStub(Channel(server.target()));
  const auto pool_status = [&] {
    grpc::ClientContext context;
    SetDeadline(context);
    context.AddMetadata("authorization", "Bearer " + server.token());
    v1::PoolStatus status;
    return stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status);
  };
  ASSERT_TRUE(pool_status().ok());

  const int port = Port(server.target());
  const int silent = Connect(port);
  const int preface_only = Connect(port);
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
  const std::string settings("\0\0\0\4\0\0\0\0\0", 9);
  const std::string opening = preface + settings;
  ASSERT_EQ(write(preface_only, opening.data(), opening.size()),
            static_cast<ssize_t>(opening.size()));
  // Well past both limits, far short of "never".
  EXPECT_TRUE(AwaitPeerClose(silent, absl::Seconds(30)));
  EXPECT_TRUE(AwaitPeerClose(preface_only, absl::Seconds(30)));
  close(silent);
  close(preface_only);

  // The stub's connection was idle as long: it was closed, and the next call opens another.
  EXPECT_TRUE(pool_status().ok());
  absl::StatusOr<std::string> after = (*executor)->Submit("echo", "after").Result();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, "after");
  ASSERT_TRUE(server.Stop().ok());
}

}  // namespace
}  // namespace mpigate
