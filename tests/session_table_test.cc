// SessionTable and Session: tokens, grace deadlines, and the outcomes a session holds until its
// client acknowledges them, without a scheduler.
#include "server/session_table.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kStart = absl::UnixEpoch() + absl::Hours(1);

v1::TaskOutcome OutcomeOf(uint64_t task_id) {
  v1::TaskOutcome outcome;
  outcome.set_task_id(task_id);
  outcome.set_result(absl::StrCat("result ", task_id));
  return outcome;
}

std::vector<uint64_t> IdsOf(const std::vector<v1::TaskOutcome>& outcomes) {
  std::vector<uint64_t> ids;
  for (const v1::TaskOutcome& outcome : outcomes) ids.push_back(outcome.task_id());
  return ids;
}

TEST(SessionTableTest, FindsSessionsByIdAndTokenUntilTheyAreGone) {
  SessionTable table;
  const absl::StatusOr<SessionId> first = table.Add("token-a");
  ASSERT_TRUE(first.ok());
  const absl::StatusOr<SessionId> second = table.Add("token-b");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*first, *second);
  EXPECT_EQ(table.Add("token-a").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(table.FindByToken("token-b"), *second);
  EXPECT_EQ(table.FindByToken("token-c"), 0u);

  table.at(*first).abandoned = true;
  EXPECT_EQ(table.FindOpen(*first), nullptr);
  EXPECT_NE(table.Find(*first), nullptr);
  table.Erase(*second);
  EXPECT_EQ(table.Find(*second), nullptr);
  EXPECT_EQ(table.FindByToken("token-b"), 0u);
}

TEST(SessionTableTest, ForgetsAnAbandonedSessionOnlyOnceItsTasksHaveEnded) {
  SessionTable table;
  const SessionId id = *table.Add("token");
  Session& session = table.at(id);
  session.live.emplace(7, 1);
  table.EraseIfAbandonedAndDone(id);
  EXPECT_NE(table.Find(id), nullptr);
  session.abandoned = true;
  table.EraseIfAbandonedAndDone(id);
  EXPECT_NE(table.Find(id), nullptr);
  table.at(id).live.clear();
  table.EraseIfAbandonedAndDone(id);
  EXPECT_EQ(table.Find(id), nullptr);
}

TEST(SessionTableTest, GracePeriodsExpireInDeadlineOrderSkippingResumedSessions) {
  SessionTable table;
  const SessionId a = *table.Add("a");
  const SessionId b = *table.Add("b");
  const SessionId c = *table.Add("c");
  EXPECT_EQ(table.NextGraceDeadline(), absl::InfiniteFuture());
  table.StartGrace(b, table.at(b), kStart + absl::Seconds(2));
  table.StartGrace(a, table.at(a), kStart + absl::Seconds(3));
  table.StartGrace(c, table.at(c), kStart + absl::Seconds(1));
  EXPECT_EQ(table.NextGraceDeadline(), kStart + absl::Seconds(1));
  // Resumed before its deadline.
  table.at(c).detached = false;
  EXPECT_EQ(table.PopExpired(kStart), 0u);
  EXPECT_EQ(table.PopExpired(kStart + absl::Seconds(2)), b);
  EXPECT_EQ(table.PopExpired(kStart + absl::Seconds(2)), 0u);
  EXPECT_EQ(table.PopExpired(kStart + absl::Seconds(5)), a);
  EXPECT_EQ(table.NextGraceDeadline(), absl::InfiniteFuture());
}

TEST(SessionTableTest, CountsOpenAndDetachedSessionsAndTheOneThatWaitedLongest) {
  SessionTable table;
  const SessionId a = *table.Add("a");
  const SessionId b = *table.Add("b");
  const SessionId c = *table.Add("c");
  table.at(a).abandoned = true;
  table.StartGrace(c, table.at(c), kStart + absl::Seconds(1));
  table.StartGrace(b, table.at(b), kStart + absl::Seconds(2));
  const SessionTable::Census census = table.Count();
  EXPECT_EQ(census.open, 2u);
  EXPECT_EQ(census.detached, 2u);
  EXPECT_EQ(census.longest_detached, c);
}

TEST(SessionTest, AcknowledgesOnlyOutcomesItsListenerHasCollected) {
  Session session;
  session.Hold(1, 100, OutcomeOf(1));
  SessionEvents first;
  session.Collect(first);
  session.Hold(2, 50, OutcomeOf(2));
  EXPECT_EQ(session.unread_bytes, 150u);
  session.Ack({1, 2, 3});
  // 2 waits in the outbox: its client cannot have read it.
  EXPECT_EQ(session.unread_bytes, 50u);
  EXPECT_FALSE(session.Holds(1));
  EXPECT_TRUE(session.Holds(2));
  SessionEvents second;
  session.Collect(second);
  EXPECT_THAT(IdsOf(second.outcomes), ElementsAre(2));
  session.Ack({2});
  EXPECT_EQ(session.unread_bytes, 0u);
}

TEST(SessionTest, ResendsRetainedOutcomesInTaskIdOrderBeforeThoseNeverCollected) {
  Session session;
  session.Hold(5, 10, OutcomeOf(5));
  session.Hold(3, 10, OutcomeOf(3));
  session.Hold(4, 10, OutcomeOf(4));
  SessionEvents events;
  session.Collect(events);
  session.Hold(1, 10, OutcomeOf(1));
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written(events.outcomes.begin(),
                                                              events.outcomes.end());
  session.Ack({4});
  // 4 was acknowledged meanwhile: not kept.
  session.Retain(written);
  session.ResendRetained();
  EXPECT_THAT(IdsOf(session.outbox), ElementsAre(3, 5, 1));
  EXPECT_THAT(session.retained, IsEmpty());
  EXPECT_THAT(session.PendingTaskIds(), ElementsAre(1, 3, 5));
}

TEST(SessionTest, CollectsStartedProgressAndClosedOnce) {
  Session session;
  session.started = {7, 8};
  session.progress[7].set_task_id(7);
  session.listener_told = true;
  session.shut_down = true;
  EXPECT_TRUE(session.HasEvents());
  SessionEvents events;
  session.Collect(events);
  EXPECT_THAT(events.started, ElementsAre(7, 8));
  ASSERT_EQ(events.progress.size(), 1u);
  EXPECT_TRUE(events.closed);
  EXPECT_FALSE(session.listener_told);
  EXPECT_THAT(session.progress, IsEmpty());
}

TEST(SessionTest, DropsEveryOutcomeItHoldsSeeingEachFirst) {
  Session session;
  session.Hold(1, 10, OutcomeOf(1));
  SessionEvents events;
  session.Collect(events);
  google::protobuf::RepeatedPtrField<v1::TaskOutcome> written(events.outcomes.begin(),
                                                              events.outcomes.end());
  session.Retain(written);
  session.Hold(2, 10, OutcomeOf(2));
  std::vector<uint64_t> dropped;
  session.DropOutcomes(
      [&dropped](v1::TaskOutcome& outcome) { dropped.push_back(outcome.task_id()); });
  EXPECT_THAT(dropped, ::testing::UnorderedElementsAre(1, 2));
  EXPECT_EQ(session.unread_bytes, 0u);
  EXPECT_FALSE(session.Holds(1));
  EXPECT_FALSE(session.HasEvents());
}

}  // namespace
}  // namespace mpigate::server
