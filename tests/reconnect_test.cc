// Sessions that survive a dropped connection and a killed client, end to end: a real
// mpigate-server, clients reaching it through a TCP proxy that drops every connection on demand,
// raw streams that resume with a token, a client process killed with SIGKILL and followed by one
// that resumes its session, the grace period running out, and the bound on unread results.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/raw_session.h"
#include "tests/resume_client_process.h"
#include "tests/server_process.h"
#include "tests/shared_server.h"
#include "tests/tcp_proxy.h"

extern char** environ;

namespace mpigate {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The shared server keeps a broken session for 20 s and at most 8 MiB of unread outcomes per
// session (with what its unfinished tasks reserve: a few hundred bytes each, so 6,000 tasks at
// once fit); the tests' results are small, except where they test that bound.
constexpr int kGraceSeconds = 20;

class ReconnectTest : public testing::SharedServerTest<ReconnectTest> {
 public:
  static testing::ServerOptions SharedServerOptions() {
    return {
        .workers = 2,
        .flags = {absl::StrCat("--resume-grace-s=", kGraceSeconds), "--max-unread-result-mb=8"}};
  }

 protected:
  static std::unique_ptr<v1::Gateway::Stub> Stub(const std::string& target) {
    return v1::Gateway::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  }

  static std::string UnixPath() {
    const std::string& target = server_->target();
    return target.substr(target.find(':') + 1);
  }
};

// The status entry of session `id`, if the status lists it.
const v1::SessionStatus* Find(const v1::PoolStatus& status, uint64_t id) {
  for (const v1::SessionStatus& session : status.session_list()) {
    if (session.session_id() == id) return &session;
  }
  return nullptr;
}

// Opens a Session call with `open` and returns how the service ended it, for opens it refuses.
grpc::Status RefusedOpen(v1::Gateway::Stub& stub, const v1::OpenSession& open) {
  grpc::ClientContext context;
  auto stream = stub.Session(&context);
  v1::SessionRequest request;
  *request.mutable_open() = open;
  stream->Write(request);
  v1::SessionEvent event;
  EXPECT_FALSE(stream->Read(&event)) << "the open was answered: " << event.DebugString();
  return stream->Finish();
}


TEST_F(ReconnectTest, FuturesCompleteExactlyOnceWhileEveryConnectionIsDroppedAgainAndAgain) {
  absl::StatusOr<std::unique_ptr<testing::TcpProxy>> proxy = testing::TcpProxy::Start(UnixPath());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  absl::StatusOr<std::unique_ptr<Executor>> executor =
      Executor::Connect({.endpoint = (*proxy)->target(), .client_name = "dropped"});
  ASSERT_TRUE(executor.ok()) << executor.status();
  EXPECT_FALSE((*executor)->resume_token().empty());

  constexpr int kTasks = 6000;
  absl::Mutex mu;
  int done = 0;
  std::vector<int> calls(kTasks + 1, 0);
  std::vector<Future> futures;
  const auto submit = [&](int first, int last) {
    for (int i = first; i <= last; ++i) {
      Future future = (*executor)->Submit("echo", absl::StrCat("task ", i));
      future.AddDoneCallback([&, i](const Future&) {
        absl::MutexLock lock(&mu);
        ++calls[static_cast<size_t>(i)];
        ++done;
      });
      futures.push_back(std::move(future));
    }
  };
  const auto await_done = [&](int count) {
    const auto reached = [&done, count] { return done >= count; };
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&reached));
  };
  int dropped = 0;
  // While the first specs are still on their way, then in the middle of the results, then with a
  // second batch in flight. Each drop waits for the client's new connection first: tasks may
  // finish faster than the client reconnects, and a drop between connections cuts nothing.
  submit(1, 3000);
  dropped += (*proxy)->DropAll();
  await_done(1000);
  (*proxy)->AwaitAccepted(2);
  dropped += (*proxy)->DropAll();
  submit(3001, kTasks);
  await_done(4000);
  (*proxy)->AwaitAccepted(3);
  dropped += (*proxy)->DropAll();
  await_done(kTasks);

  for (int i = 1; i <= kTasks; ++i) {
    EXPECT_EQ(futures[static_cast<size_t>(i - 1)].Result().value_or("error"),
              absl::StrCat("task ", i));
  }
  (*executor)->Shutdown();
  absl::MutexLock lock(&mu);
  for (int i = 1; i <= kTasks; ++i) EXPECT_EQ(calls[static_cast<size_t>(i)], 1) << "task " << i;
  EXPECT_EQ(dropped, 3);
  // One new connection per drop: a reconnect's handshake on a loaded machine is given time to end
  // rather than being cut off and started again.
  EXPECT_EQ((*proxy)->accepted(), 4);
}

TEST_F(ReconnectTest, AResumedRawStreamGetsWhatWasNotAcknowledgedAndNothingElse) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub(server_->target());
  std::string token;
  uint64_t session_id = 0;
  {
    testing::RawSession first(*stub);
    EXPECT_FALSE(first.opened().resumed());
    EXPECT_EQ(first.opened().resume_grace_ms(), uint64_t{kGraceSeconds} * 1000);
    token = first.opened().resume_token();
    session_id = first.opened().session_id();
    ASSERT_EQ(token.size(), 16u);
    for (uint64_t id = 1; id <= 3; ++id) first.Submit(id, "echo", absl::StrCat("r", id));
    ASSERT_TRUE(first.AwaitOutcomes(3));
    v1::SessionRequest ack;
    ack.mutable_ack()->add_task_ids(1);
    first.Send(ack);
    // Answered only once the ack before it has been handled.
    v1::SessionRequest cancel;
    cancel.mutable_cancel()->add_task_ids(999);
    first.Send(cancel);
    ASSERT_TRUE(first.NextReply().has_cancel_results());
  }  // The stream is cancelled: the session is detached, not gone.
  ASSERT_TRUE(testing::AwaitPoolStatus(server_->target(), [&](const v1::PoolStatus& status) {
                const v1::SessionStatus* session = Find(status, session_id);
                return session != nullptr && session->detached();
              }).ok());

  v1::OpenSession open;
  open.set_resume_token(token);
  open.add_acked_task_ids(2);
  testing::RawSession resumed(*stub, open);
  EXPECT_TRUE(resumed.opened().resumed());
  EXPECT_EQ(resumed.opened().session_id(), session_id);
  EXPECT_EQ(resumed.opened().resume_token(), token);
  EXPECT_EQ(resumed.opened().last_task_id(), 3u);
  EXPECT_THAT(resumed.opened().pending_task_ids(), ElementsAre(3));
  // A re-sent task the session holds is ignored; a new one runs.
  resumed.Submit(3, "echo", "again");
  resumed.Submit(4, "echo", "r4");
  v1::SessionRequest shutdown;
  shutdown.mutable_shutdown();
  resumed.Send(shutdown);
  ASSERT_TRUE(resumed.ReadToEnd().ok());
  EXPECT_TRUE(resumed.closed());
  EXPECT_EQ(resumed.duplicate_outcomes(), 0);
  ASSERT_EQ(resumed.outcomes().size(), 2u);
  EXPECT_EQ(resumed.outcomes().at(3).result(), "r3");
  EXPECT_EQ(resumed.outcomes().at(4).result(), "r4");
}

TEST_F(ReconnectTest, ResumingNeedsTheTokenOfASessionNoOtherStreamHolds) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub(server_->target());
  testing::RawSession attached(*stub);
  v1::OpenSession open;
  open.set_resume_token(attached.opened().resume_token());
  EXPECT_EQ(RefusedOpen(*stub, open).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  open.set_resume_token("not a token");
  EXPECT_EQ(RefusedOpen(*stub, open).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReconnectTest, AClientKilledMidwayIsFollowedByOneThatCollectsEveryResultItDidNotRead) {
  constexpr int kTasks = 400;
  absl::StatusOr<testing::KilledClient> killed =
      testing::RunAndKillResumeClient(server_->target(), kTasks, /*kill_after=*/100);
  ASSERT_TRUE(killed.ok()) << killed.status();
  const std::string& token = killed->token;
  const std::map<uint64_t, std::string>& recorded = killed->recorded;
  ASSERT_EQ(token.size(), 16u);
  EXPECT_EQ(killed->duplicates, 0);
  ASSERT_GE(recorded.size(), 100u);
  ASSERT_LT(recorded.size(), static_cast<size_t>(kTasks)) << "it finished before it was killed";
  for (const auto& [id, result] : recorded) EXPECT_EQ(result, testing::ResumeClientResult(id)) << id;

  // A new client resumes the session, telling the service what the first one recorded.
  ExecutorOptions options{.endpoint = server_->target(), .client_name = "resumed"};
  options.resume_token = token;
  for (const auto& [id, result] : recorded) options.acked_task_ids.push_back(id);
  absl::StatusOr<std::unique_ptr<Executor>> executor = Executor::Connect(options);
  ASSERT_TRUE(executor.ok()) << executor.status();
  EXPECT_EQ((*executor)->resume_token(), token);

  // Every task exactly once: recorded by the first, or reattached to the second.
  absl::Mutex mu;
  std::map<uint64_t, int> calls;
  std::set<uint64_t> all;
  for (const Future& future : (*executor)->Reattached()) {
    EXPECT_EQ(recorded.count(future.task_id()), 0u) << future.task_id();
    all.insert(future.task_id());
    future.AddDoneCallback([&](const Future& done) {
      absl::MutexLock lock(&mu);
      ++calls[done.task_id()];
    });
  }
  for (const auto& [id, result] : recorded) all.insert(id);
  EXPECT_EQ(all.size(), static_cast<size_t>(kTasks));
  EXPECT_EQ(*all.begin(), 1u);
  EXPECT_EQ(*all.rbegin(), static_cast<uint64_t>(kTasks));
  for (const Future& future : (*executor)->Reattached()) {
    EXPECT_EQ(future.Result().value_or("error"), testing::ResumeClientResult(future.task_id()))
        << future.task_id();
  }
  // New tasks take ids after the first client's.
  Future next = (*executor)->Submit("echo", "next");
  EXPECT_EQ(next.Result().value_or(""), "next");
  EXPECT_GT(next.task_id(), static_cast<uint64_t>(kTasks));
  (*executor)->Shutdown();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(calls.size(), (*executor)->Reattached().size());
  for (const auto& [id, count] : calls) EXPECT_EQ(count, 1) << id;
}

TEST_F(ReconnectTest, AnExecutorAcknowledgesWhatItReadSoTheServiceLetsGo) {
  std::unique_ptr<Executor> executor = Connect("acknowledging");
  ASSERT_NE(executor, nullptr);
  std::vector<std::string> inputs(500, std::string(100, 'x'));
  for (const absl::StatusOr<std::string>& result : executor->Map("echo", inputs)) {
    ASSERT_TRUE(result.ok()) << result.status();
  }
  // Acknowledged in batches: the session ends up holding nothing for the client.
  EXPECT_TRUE(testing::AwaitPoolStatus(server_->target(), [](const v1::PoolStatus& status) {
                for (const v1::SessionStatus& session : status.session_list()) {
                  if (session.client_name() == "acknowledging") {
                    return session.unread_result_bytes() == 0;
                  }
                }
                return false;
              }).ok());
}

TEST_F(ReconnectTest, UnreadResultsAreBoundedPerSessionAndOtherSessionsAreUnaffected) {
  std::unique_ptr<v1::Gateway::Stub> stub = Stub(server_->target());
  testing::RawSession slow(*stub);
  // Reads its outcomes but never acknowledges them: the 8 MiB bound holds two of 3.5 MB.
  const std::string big(3'500'000, 'b');
  for (uint64_t id = 1; id <= 3; ++id) {
    slow.Submit(id, "echo", big);
    ASSERT_TRUE(slow.AwaitOutcomes(id));
  }
  EXPECT_EQ(slow.outcomes().at(1).result(), big);
  EXPECT_EQ(slow.outcomes().at(2).result(), big);
  const v1::TaskOutcome& refused = slow.outcomes().at(3);
  EXPECT_EQ(refused.state(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(refused.error().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_THAT(refused.error().message(),
              AllOf(HasSubstr("8388608 bytes"), HasSubstr("--max_unread_result_mb"),
                    HasSubstr("read results sooner")));

  // Another session's results are its own.
  std::unique_ptr<Executor> executor = Connect("unaffected");
  ASSERT_NE(executor, nullptr);
  EXPECT_EQ(executor->Submit("echo", big).Result().value_or(""), big);

  // Once the slow reader acknowledges, it has room again.
  v1::SessionRequest ack;
  ack.mutable_ack()->add_task_ids(1);
  ack.mutable_ack()->add_task_ids(2);
  ack.mutable_ack()->add_task_ids(3);
  slow.Send(ack);
  slow.Submit(4, "echo", big);
  ASSERT_TRUE(slow.AwaitOutcomes(4));
  EXPECT_EQ(slow.outcomes().at(4).result(), big);
}

TEST(ReconnectGraceTest, ADetachedSessionNotResumedInTimeIsCancelledAndFreed) {
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start({.workers = 2, .flags = {"--resume-grace-s=1"}}).ok());
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  std::string token;
  {
    testing::RawSession session(*stub);
    token = session.opened().resume_token();
    EXPECT_EQ(session.opened().resume_grace_ms(), 1000u);
    // Both workers busy for ten minutes, and a task queued behind them.
    session.Submit(1, "sleep", "600000");
    session.Submit(2, "sleep", "600000");
    session.Submit(3, "echo", "queued");
    ASSERT_TRUE(session.AwaitStarted(1));
    ASSERT_TRUE(session.AwaitStarted(2));
  }  // Gone without `closed`.
  // The running tasks are interrupted, the queued one cancelled, and the session forgotten.
  ASSERT_TRUE(testing::AwaitPoolStatus(server.target(), [](const v1::PoolStatus& status) {
                return status.sessions() == 0 && status.busy_workers() == 0;
              }).ok());
  grpc::ClientContext context;
  v1::PoolStatus status;
  ASSERT_TRUE(stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status).ok());
  EXPECT_EQ(status.tasks_cancelled(), 3u);
  EXPECT_THAT(status.session_list(), IsEmpty());
  v1::OpenSession open;
  open.set_resume_token(token);
  EXPECT_EQ(RefusedOpen(*stub, open).error_code(), grpc::StatusCode::NOT_FOUND);

  absl::StatusOr<testing::ServerExit> exit = server.Stop();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

}  // namespace
}  // namespace mpigate
