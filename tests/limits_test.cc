// End-to-end tests of the service's limits on sessions and on each session's queue, against a
// real mpigate-server: a client past a limit gets RESOURCE_EXHAUSTED with a message that names
// the limit, and every other client goes on as before. (The message size limit, --max_message_mb,
// is tested in e2e_test.)
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/http_exchange.h"
#include "tests/process_info.h"
#include "tests/raw_session.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<Executor>> Connect(const testing::ServerProcess& server,
                                                  const std::string& name) {
  return Executor::Connect({.endpoint = server.target(), .client_name = name});
}

TEST(LimitsTest, AClientPastTheSessionLimitIsRefusedAndTheOthersGoOn) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--max_sessions=2"}}).ok());
  absl::StatusOr<std::unique_ptr<Executor>> first = Connect(server, "first");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<Executor>> second = Connect(server, "second");
  ASSERT_TRUE(second.ok()) << second.status();

  absl::StatusOr<std::unique_ptr<Executor>> third = Connect(server, "third");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_THAT(third.status().message(),
              AllOf(HasSubstr("maximum of 2 open sessions"), HasSubstr("--max_sessions")));

  EXPECT_EQ(*(*first)->Submit("echo", "still").Result(), "still");
  EXPECT_EQ(*(*second)->Submit("echo", "here").Result(), "here");
  // Once a session has closed there is room again.
  (*first)->Shutdown();
  first->reset();
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
                return status.sessions() == 1;
              }).ok());
  absl::StatusOr<std::unique_ptr<Executor>> later = Connect(server, "later");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(*(*later)->Submit("echo", "in").Result(), "in");
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LimitsTest, TasksPastASessionsQueueLimitFailAloneAndTheQueueTakesMoreAsItDrains) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server
          .Start({.workers = 2,
                  .flags = {"--max_queued_tasks_per_session=3", "--max_tasks_per_worker=1"}})
          .ok());
  absl::StatusOr<std::unique_ptr<Executor>> limited = Connect(server, "limited");
  ASSERT_TRUE(limited.ok()) << limited.status();
  absl::StatusOr<std::unique_ptr<Executor>> other = Connect(server, "other");
  ASSERT_TRUE(other.ok()) << other.status();

  // Both workers busy: what the session submits next stays queued.
  std::vector<Future> sleepers;
  for (int i = 0; i < 2; ++i) sleepers.push_back((*limited)->Submit("sleep", "60000"));
  for (const Future& sleeper : sleepers) ASSERT_TRUE(sleeper.WaitStarted());
  std::vector<Future> queued;
  for (int i = 0; i < 5; ++i) queued.push_back((*limited)->Submit("echo", absl::StrCat(i)));
  // The last two found the queue full.
  for (int i = 3; i < 5; ++i) {
    const absl::Status refused = queued[i].Exception();
    EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
    EXPECT_THAT(refused.message(), AllOf(HasSubstr("maximum of 3 queued tasks"),
                                         HasSubstr("--max_queued_tasks_per_session")));
  }
  // Another session's queue is its own.
  std::vector<Future> others;
  for (int i = 0; i < 3; ++i) others.push_back((*other)->Submit("echo", absl::StrCat("o", i)));

  for (Future& sleeper : sleepers) EXPECT_TRUE(sleeper.Interrupt());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*queued[i].Result(), absl::StrCat(i));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*others[i].Result(), absl::StrCat("o", i));
  // With the queue drained the session takes tasks again.
  EXPECT_EQ(*(*limited)->Submit("echo", "again").Result(), "again");
  ASSERT_TRUE(server.Stop().ok());
}

// How many tasks the server at metrics `port` has rejected with RESOURCE_EXHAUSTED.
uint64_t ResourceExhaustedRejections(int port, const std::string& token) {
  const std::string scrape = testing::HttpExchange(
      port, absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ", token,
                         "\r\n\r\n"));
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    absl::string_view value = line;
    if (!absl::ConsumePrefix(&value,
                             "mpigate_tasks_rejected_total{code=\"RESOURCE_EXHAUSTED\"} ")) {
      continue;
    }
    uint64_t count = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &count)) return count;
  }
  return 0;
}

TEST(LimitsTest, ASessionThatSubmitsAndNeverReadsStaysWithinTheUnreadBound) {
  testing::ServerProcess server;
  ASSERT_TRUE(server
                  .Start({.workers = 2,
                          .flags = {"--max-unread-result-mb=1", "--metrics_listen=127.0.0.1:0"}})
                  .ok());
  const std::string& address = server.metrics_address();
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  constexpr uint64_t kBound = 1 << 20;
  // 200,000 small tasks in 400 messages from a client that reads nothing after `opened`: as many
  // as the run kept failures of (76.6 MB).
  constexpr uint64_t kMessages = 400;
  constexpr uint64_t kTasksPerMessage = 500;

  std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionEvent>> stream =
      stub->Session(&context);
  v1::SessionRequest open;
  open.mutable_open()->set_client_name("never reads");
  ASSERT_TRUE(stream->Write(open));
  v1::SessionEvent opened;
  ASSERT_TRUE(stream->Read(&opened));
  ASSERT_TRUE(opened.has_opened());
  const uint64_t session_id = opened.opened().session_id();
  const absl::StatusOr<uint64_t> rss_before = testing::ResidentBytes(server.pid());
  ASSERT_TRUE(rss_before.ok()) << rss_before.status();

  // Writes until all is sent or the service stops reading (a write then blocks until the call is
  // cancelled below).
  std::thread writer([&stream] {
    for (uint64_t m = 0; m < kMessages; ++m) {
      v1::SessionRequest submit;
      for (uint64_t i = 1; i <= kTasksPerMessage; ++i) {
        v1::TaskSpec& task = *submit.mutable_submit()->add_tasks();
        task.set_task_id(m * kTasksPerMessage + i);
        task.set_function("echo");
        task.set_payload("0123456789abcdef");
      }
      if (!stream->Write(submit)) return;
    }
  });
  // Until every task has ended (all accepted, as without the bound on submits), or the service
  // has refused thousands: then the session holds all it will.
  uint64_t unread = 0;
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [&](const v1::PoolStatus& status) {
                for (const v1::SessionStatus& session : status.session_list()) {
                  if (session.session_id() != session_id) continue;
                  unread = session.unread_result_bytes();
                  if (session.queued_tasks() > 0 || session.running_tasks() > 0) return false;
                }
                const uint64_t ended =
                    status.tasks_succeeded() + status.tasks_failed() + status.tasks_cancelled();
                return ended == kMessages * kTasksPerMessage ||
                       ResourceExhaustedRejections(port, server.metrics_token()) >=
                           4 * kTasksPerMessage;
              }).ok());
  const absl::StatusOr<uint64_t> rss_after = testing::ResidentBytes(server.pid());
  ASSERT_TRUE(rss_after.ok()) << rss_after.status();
  EXPECT_LE(unread, kBound);
  // The bound, the replies waiting to be written, and what gRPC buffers; without the bound on
  // what a session holds, 200,000 kept outcomes took about 80 MB.
  // (Not under the sanitizers, whose quarantine keeps up to 256 MiB of freed memory resident.)
  if (!testing::kSanitizerAllocator) {
    EXPECT_LT(*rss_after - std::min(*rss_after, *rss_before), uint64_t{32} << 20)
        << "RSS " << *rss_before << " -> " << *rss_after;
  }
  context.TryCancel();
  writer.join();
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LimitsTest, SessionsDroppedUpToTheLimitMakeRoomForANewClientAtOnce) {
  testing::ServerProcess server;
  ASSERT_TRUE(
      server.Start({.workers = 2, .flags = {"--max_sessions=3", "--resume-grace-s=600"}}).ok());
  std::unique_ptr<v1::Gateway::Stub> stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  // Three sessions opened and dropped: each waits 600 s to be resumed. The first two hold a
  // worker each.
  for (int i = 0; i < 3; ++i) {
    testing::RawSession dropped(*stub);
    // Ten minutes: should they not be interrupted, the echoes below wait past the test's limit.
    if (i < 2) dropped.Submit(1, "sleep", "600000");
    // The reply to a cancel of nothing: the submit before it has been handled.
    v1::SessionRequest cancel;
    cancel.mutable_cancel();
    dropped.Send(cancel);
    ASSERT_TRUE(dropped.NextReply().has_cancel_results());
  }
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
                int detached = 0;
                for (const v1::SessionStatus& session : status.session_list()) {
                  detached += session.detached() ? 1 : 0;
                }
                return detached == 3;
              }).ok());

  // New clients get in at once, each in place of a dropped session.
  std::vector<std::unique_ptr<Executor>> clients;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::unique_ptr<Executor>> client = Connect(server, absl::StrCat("new ", i));
    ASSERT_TRUE(client.ok()) << client.status();
    EXPECT_EQ(*(*client)->Submit("echo", "in").Result(), "in");
    clients.push_back(*std::move(client));
  }
  // The dropped sessions' sleeps were interrupted: the first new client's echo found a worker
  // at once, and both are free now.
  const v1::PoolStatus status = [&] {
    v1::PoolStatus last;
    EXPECT_TRUE(testing::AwaitPoolStatus(server.target(), [&last](const v1::PoolStatus& s) {
                  last = s;
                  return s.busy_workers() == 0;
                }).ok());
    return last;
  }();
  EXPECT_EQ(status.sessions(), 3u);
  // With every session attached, the next is refused.
  absl::StatusOr<std::unique_ptr<Executor>> refused = Connect(server, "refused");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("each with a client attached"));
  for (std::unique_ptr<Executor>& client : clients) client->Shutdown();
  ASSERT_TRUE(server.Stop().ok());
}

TEST(LimitsTest, NegativeLimitsAreAUsageError) {
  for (const char* flag : {"--max_sessions=-1", "--max_queued_tasks_per_session=-1"}) {
    testing::ServerProcess server;
    const absl::Status started = server.Start({.workers = 1, .flags = {flag}});
    ASSERT_FALSE(started.ok()) << flag;
    EXPECT_THAT(std::string(started.message()), HasSubstr("must not be negative")) << flag;
  }
}

}  // namespace
}  // namespace mpigate
