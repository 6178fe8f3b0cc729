// GatewayLink over MPI_COMM_SELF: this process is both the "gateway" (rank 0) and the worker, so
// the frames a test sends itself are what the link hears, and what the link sends comes back to
// the test. A singleton MPI run: no mpiexec, no other process. What the link sends during a
// Hear() would be heard by that same Hear(), so a test that expects an answer there ends what it
// sends with a shutdown, at which Hear() stops.
#include "worker/gateway_link.h"

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "worker/task_backlog.h"

namespace mpigate::worker {
namespace {

using ::testing::ElementsAre;

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int provided = 0;
    ASSERT_EQ(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), MPI_SUCCESS);
    ASSERT_EQ(wire::ReturnErrors(MPI_COMM_SELF), absl::OkStatus());
  }
  void TearDown() override { MPI_Finalize(); }
};

const ::testing::Environment* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

std::string Task(uint64_t key) {
  wire::TaskFrame frame;
  frame.set_task_key(key);
  frame.set_function("echo");
  return frame.SerializeAsString();
}

void SendToLink(wire::Tag tag, const google::protobuf::MessageLite& frame) {
  ASSERT_EQ(wire::SendFrame(MPI_COMM_SELF, kGatewayRank, tag, frame), absl::OkStatus());
}

// Every message the link has sent, in order.
std::vector<wire::ReceivedMessage> SentByLink() {
  std::vector<wire::ReceivedMessage> sent;
  while (true) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(MPI_COMM_SELF, kGatewayRank);
    EXPECT_TRUE(received.ok()) << received.status();
    if (!received.ok() || !received->has_value()) return sent;
    sent.push_back(**std::move(received));
  }
}

std::vector<uint64_t> BacklogKeys(TaskBacklog& backlog) {
  std::vector<uint64_t> keys;
  while (!backlog.empty()) keys.push_back(backlog.TakeFront().header.task_key);
  return keys;
}

TEST(GatewayLinkTest, HearsNothingWhenNothingCame) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  absl::StatusOr<Heard> heard = link.Hear();
  ASSERT_TRUE(heard.ok()) << heard.status();
  EXPECT_FALSE(heard->anything);
  EXPECT_FALSE(heard->shutdown);
  EXPECT_TRUE(backlog.empty());
}

TEST(GatewayLinkTest, TasksAloneAndInBatchesJoinTheBacklogInOrder) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  wire::TaskFrame first;
  first.set_task_key(1);
  SendToLink(wire::Tag::kTask, first);
  wire::FrameBatch batch;
  batch.add_frames(Task(2));
  batch.add_frames(Task(3));
  SendToLink(wire::Tag::kTasks, batch);
  absl::StatusOr<Heard> heard = link.Hear();
  ASSERT_TRUE(heard.ok()) << heard.status();
  EXPECT_TRUE(heard->anything);
  EXPECT_EQ(BacklogKeys(backlog), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(SentByLink().empty());
}

TEST(GatewayLinkTest, ACancelOfAWaitingTaskDropsItAndAnswersCancelled) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  wire::FrameBatch batch;
  batch.add_frames(Task(1));
  batch.add_frames(Task(2));
  SendToLink(wire::Tag::kTasks, batch);
  wire::CancelFrame waiting;
  waiting.set_task_key(2);
  SendToLink(wire::Tag::kCancel, waiting);
  wire::CancelFrame elsewhere;
  elsewhere.set_task_key(9);
  elsewhere.set_force(true);
  SendToLink(wire::Tag::kCancel, elsewhere);
  SendToLink(wire::Tag::kShutdown, wire::ShutdownFrame());

  absl::StatusOr<Heard> heard = link.Hear();
  ASSERT_TRUE(heard.ok()) << heard.status();
  EXPECT_EQ(BacklogKeys(backlog), (std::vector<uint64_t>{1}));
  // The cancel of a task not waiting here is for the caller.
  bool force = false;
  EXPECT_FALSE(heard->Cancels(2, force));
  EXPECT_TRUE(heard->Cancels(9, force));
  EXPECT_TRUE(force);

  std::vector<wire::ReceivedMessage> sent = SentByLink();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].tag, wire::Tag::kResult);
  wire::ResultFrame dropped;
  ASSERT_EQ(wire::Decode(sent[0].bytes, dropped), absl::OkStatus());
  EXPECT_EQ(dropped.task_key(), 2u);
  EXPECT_EQ(dropped.error().code(), static_cast<int32_t>(absl::StatusCode::kCancelled));
}

TEST(GatewayLinkTest, StopsAtAShutdownAndLeavesWhatFollowsUnread) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  EXPECT_TRUE(link.disconnect());
  wire::ShutdownFrame shutdown;
  shutdown.set_skip_disconnect(true);
  SendToLink(wire::Tag::kShutdown, shutdown);
  SendToLink(wire::Tag::kTask, wire::TaskFrame());
  absl::StatusOr<Heard> heard = link.Hear();
  ASSERT_TRUE(heard.ok()) << heard.status();
  EXPECT_TRUE(heard->shutdown);
  EXPECT_FALSE(link.disconnect());
  EXPECT_TRUE(backlog.empty());
  // The task after the shutdown is still there.
  std::vector<wire::ReceivedMessage> unread = SentByLink();
  ASSERT_EQ(unread.size(), 1u);
  EXPECT_EQ(unread[0].tag, wire::Tag::kTask);
}

TEST(GatewayLinkTest, AnUnexpectedTagIsAnError) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  SendToLink(wire::Tag::kHello, wire::HelloFrame());
  EXPECT_EQ(link.Hear().status().code(), absl::StatusCode::kInternal);
}

TEST(GatewayLinkTest, HeartbeatsGoOnceAskedForAndQuietSaysSoAtOnce) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  ASSERT_EQ(link.Quiet(), absl::OkStatus());
  EXPECT_TRUE(SentByLink().empty());  // Not asked for yet.
  link.Loud();
  wire::HeartbeatFrame asked;
  asked.set_interval_ms(60'000);
  SendToLink(wire::Tag::kHeartbeat, asked);
  // Hears the request, then sends the first heartbeat at once.
  ASSERT_TRUE(link.Hear().ok());
  ASSERT_EQ(link.Quiet(), absl::OkStatus());
  std::vector<wire::ReceivedMessage> sent = SentByLink();
  ASSERT_EQ(sent.size(), 2u);
  wire::HeartbeatFrame loud;
  wire::HeartbeatFrame quiet;
  ASSERT_EQ(wire::Decode(sent[0].bytes, loud), absl::OkStatus());
  ASSERT_EQ(wire::Decode(sent[1].bytes, quiet), absl::OkStatus());
  EXPECT_EQ(sent[0].tag, wire::Tag::kHeartbeat);
  EXPECT_FALSE(loud.quiet());
  EXPECT_TRUE(quiet.quiet());
}

TEST(GatewayLinkTest, ARunnersBurstOfResultsGoesInOneMessageBeforeAnythingElse) {
  TaskBacklog backlog;
  GatewayLink link(MPI_COMM_SELF, backlog);
  wire::ResultFrame result;
  result.set_task_key(1);
  ASSERT_EQ(link.AddRunnerResult(result.SerializeAsString(), /*more_at_hand=*/true),
            absl::OkStatus());
  result.set_task_key(2);
  ASSERT_EQ(link.AddRunnerResult(result.SerializeAsString(), /*more_at_hand=*/true),
            absl::OkStatus());
  EXPECT_TRUE(SentByLink().empty());
  wire::ProgressFrame progress;
  progress.set_task_key(3);
  ASSERT_EQ(link.Send(wire::Tag::kProgress, progress), absl::OkStatus());
  result.set_task_key(3);
  ASSERT_EQ(link.AddRunnerResult(result.SerializeAsString(), /*more_at_hand=*/false),
            absl::OkStatus());

  std::vector<wire::ReceivedMessage> sent = SentByLink();
  std::vector<wire::Tag> tags;
  for (const wire::ReceivedMessage& message : sent) tags.push_back(message.tag);
  EXPECT_THAT(tags, ElementsAre(wire::Tag::kResults, wire::Tag::kProgress, wire::Tag::kResult));
  wire::FrameBatch batch;
  ASSERT_EQ(wire::Decode(sent[0].bytes, batch), absl::OkStatus());
  EXPECT_EQ(batch.frames_size(), 2);
}

}  // namespace
}  // namespace mpigate::worker
