// SessionOpener (client/internal/session_opener.h) against the fake gateway: an `open` answered,
// never answered, answered wrongly or refused; a resume that retries what may pass and gives up
// on what cannot.
#include "client/internal/session_opener.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "tests/fake_gateway.h"

namespace mpigate::internal {
namespace {

using ::mpigate::testing::FakeGateway;
using ::mpigate::testing::Opened;

v1::SessionRequest OpenRequest() {
  v1::SessionRequest open;
  open.mutable_open()->set_client_name("opener_test");
  return open;
}

TEST(SessionOpenerTest, OpenReturnsTheCallAndItsOpened) {
  FakeGateway gateway;
  SessionOpener opener(gateway);
  absl::StatusOr<SessionOpener::OpenCall> call =
      opener.Open(OpenRequest(), absl::InfiniteFuture(), /*wait_for_ready=*/false);
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(call->opened.session_id(), 1u);
  ASSERT_EQ(gateway.Requests(v1::SessionRequest::kOpen).size(), 1u);
  EXPECT_EQ(gateway.Requests(v1::SessionRequest::kOpen)[0].open().client_name(), "opener_test");
  // The call is live: what the service sends next arrives on it.
  v1::SessionEvent closed;
  closed.mutable_closed();
  gateway.Send(closed);
  v1::SessionEvent event;
  ASSERT_TRUE(call->stream->Read(&event));
  EXPECT_TRUE(event.has_closed());
}

TEST(SessionOpenerTest, AServiceThatNeverAnswersIsUnavailableAtTheDeadline) {
  FakeGateway gateway(
      [](const v1::OpenSession&) -> FakeGateway::OnOpenResult { return std::nullopt; });
  SessionOpener opener(gateway);
  absl::StatusOr<SessionOpener::OpenCall> call =
      opener.Open(OpenRequest(), absl::Now() + absl::Milliseconds(50), false);
  EXPECT_EQ(call.status().code(), absl::StatusCode::kUnavailable) << call.status();
  EXPECT_NE(call.status().message().find("did not answer `open` in time"), absl::string_view::npos);
}

TEST(SessionOpenerTest, AnotherEventThanOpenedIsInternal) {
  FakeGateway gateway([](const v1::OpenSession&) -> FakeGateway::OnOpenResult {
    v1::SessionEvent closed;
    closed.mutable_closed();
    return closed;
  });
  SessionOpener opener(gateway);
  absl::StatusOr<SessionOpener::OpenCall> call =
      opener.Open(OpenRequest(), absl::InfiniteFuture(), false);
  EXPECT_EQ(call.status().code(), absl::StatusCode::kInternal) << call.status();
  EXPECT_NE(call.status().message().find("instead of `opened`"), absl::string_view::npos);
}

TEST(SessionOpenerTest, ACallRefusedOrEndedBeforeOpenedSaysSo) {
  FakeGateway refusing([](const v1::OpenSession&) -> FakeGateway::OnOpenResult {
    return absl::NotFoundError("no such session");
  });
  SessionOpener opener(refusing);
  EXPECT_EQ(opener.Open(OpenRequest(), absl::InfiniteFuture(), false).status(),
            absl::NotFoundError("no such session"));
  // Ended cleanly without `opened`: a service that breaks the protocol.
  FakeGateway ending(
      [](const v1::OpenSession&) -> FakeGateway::OnOpenResult { return std::nullopt; });
  SessionOpener other(ending);
  std::thread service([&] {
    ending.AwaitRequests(v1::SessionRequest::kOpen, 1);
    ending.End(absl::OkStatus());
  });
  absl::StatusOr<SessionOpener::OpenCall> call =
      other.Open(OpenRequest(), absl::InfiniteFuture(), false);
  service.join();
  EXPECT_EQ(call.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(call.status().message().find("ended the session before opening it"),
            absl::string_view::npos);
}

TEST(SessionOpenerTest, ResumeRetriesWhatMayPass) {
  std::atomic<int> attempts{0};
  FakeGateway gateway([&](const v1::OpenSession&) -> FakeGateway::OnOpenResult {
    // The service has not yet noticed that the old stream is gone, then it has.
    if (++attempts < 3) return absl::FailedPreconditionError("the session is still attached");
    v1::SessionEvent opened = Opened("token", 1000);
    opened.mutable_opened()->set_resumed(true);
    return opened;
  });
  SessionOpener opener(gateway);
  absl::StatusOr<SessionOpener::OpenCall> call =
      opener.Resume(OpenRequest(), absl::InfiniteFuture(), absl::InfiniteDuration());
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_TRUE(call->opened.resumed());
  EXPECT_EQ(attempts.load(), 3);
  EXPECT_EQ(gateway.calls(), 3u);
}

TEST(SessionOpenerTest, ResumeGivesUpOnWhatCannotPass) {
  FakeGateway gateway([](const v1::OpenSession&) -> FakeGateway::OnOpenResult {
    return absl::NotFoundError("no such session");
  });
  SessionOpener opener(gateway);
  EXPECT_EQ(opener.Resume(OpenRequest(), absl::InfiniteFuture(), absl::InfiniteDuration())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(gateway.calls(), 1u);
}

TEST(SessionOpenerTest, ResumeStopsOnceStoppedOrPastItsDeadline) {
  FakeGateway gateway([](const v1::OpenSession&) -> FakeGateway::OnOpenResult {
    return absl::UnavailableError("connection refused");
  });
  SessionOpener late(gateway);
  EXPECT_EQ(late.Resume(OpenRequest(), absl::Now(), absl::InfiniteDuration()).status().code(),
            absl::StatusCode::kUnavailable);
  SessionOpener stopped(gateway);
  stopped.Stop();
  EXPECT_TRUE(stopped.stopped());
  const size_t calls = gateway.calls();
  EXPECT_EQ(stopped.Resume(OpenRequest(), absl::InfiniteFuture(), absl::InfiniteDuration())
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(gateway.calls(), calls + 1);
}

}  // namespace
}  // namespace mpigate::internal
