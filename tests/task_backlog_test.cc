// TaskBacklog: the worker's queue of prefetched tasks, kept as serialized TaskFrames. No MPI.
#include "worker/task_backlog.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"

namespace mpigate::worker {
namespace {

std::string Frame(uint64_t key, uint64_t run_timeout_ms = 0, bool gang = false) {
  wire::TaskFrame frame;
  frame.set_task_key(key);
  frame.set_function("echo");
  frame.set_payload(std::string(static_cast<size_t>(key), 'x'));
  frame.set_run_timeout_ms(run_timeout_ms);
  if (gang) {
    frame.add_gang(0);
    frame.add_gang(1);
  }
  return frame.SerializeAsString();
}

std::vector<uint64_t> DrainKeys(TaskBacklog& backlog) {
  std::vector<uint64_t> keys;
  while (!backlog.empty()) keys.push_back(backlog.TakeFront().header.task_key);
  return keys;
}

TEST(TaskBacklogTest, KeepsTheOrderTheTasksCameIn) {
  TaskBacklog backlog;
  EXPECT_TRUE(backlog.empty());
  for (uint64_t key : {3, 1, 2}) ASSERT_EQ(backlog.Add(Frame(key)), absl::OkStatus());
  EXPECT_EQ(DrainKeys(backlog), (std::vector<uint64_t>{3, 1, 2}));
}

TEST(TaskBacklogTest, KeepsTheFrameAsItCameAndReadsItsHeader) {
  TaskBacklog backlog;
  const std::string frame = Frame(7, /*run_timeout_ms=*/250);
  ASSERT_EQ(backlog.Add(frame), absl::OkStatus());
  EXPECT_EQ(backlog.front_bytes(), frame.size());
  EXPECT_FALSE(backlog.front_is_gang());
  TaskBacklog::Entry entry = backlog.TakeFront();
  EXPECT_EQ(entry.frame, frame);
  EXPECT_EQ(entry.header.task_key, 7u);
  EXPECT_EQ(entry.header.run_timeout_ms, 250u);
  EXPECT_FALSE(entry.interrupted);
}

TEST(TaskBacklogTest, SaysWhenAGangTaskIsFirst) {
  TaskBacklog backlog;
  ASSERT_EQ(backlog.Add(Frame(1, 0, /*gang=*/true)), absl::OkStatus());
  ASSERT_EQ(backlog.Add(Frame(2)), absl::OkStatus());
  EXPECT_TRUE(backlog.front_is_gang());
  backlog.TakeFront();
  EXPECT_FALSE(backlog.front_is_gang());
}

TEST(TaskBacklogTest, DropRemovesOnlyTheNamedTask) {
  TaskBacklog backlog;
  for (uint64_t key : {1, 2, 3}) ASSERT_EQ(backlog.Add(Frame(key)), absl::OkStatus());
  EXPECT_TRUE(backlog.Drop(2));
  EXPECT_FALSE(backlog.Drop(2));
  EXPECT_FALSE(backlog.Drop(9));
  EXPECT_EQ(DrainKeys(backlog), (std::vector<uint64_t>{1, 3}));
}

TEST(TaskBacklogTest, PushFrontPutsATaskBackAheadOfTheRest) {
  TaskBacklog backlog;
  for (uint64_t key : {1, 2}) ASSERT_EQ(backlog.Add(Frame(key)), absl::OkStatus());
  TaskBacklog::Entry first = backlog.TakeFront();
  first.interrupted = true;
  backlog.PushFront(std::move(first));
  TaskBacklog::Entry again = backlog.TakeFront();
  EXPECT_EQ(again.header.task_key, 1u);
  EXPECT_TRUE(again.interrupted);
  EXPECT_EQ(DrainKeys(backlog), (std::vector<uint64_t>{2}));
}

TEST(TaskBacklogTest, RefusesBytesThatAreNotATaskFrame) {
  TaskBacklog backlog;
  EXPECT_EQ(backlog.Add(std::string("\xff\xff\xff", 3)).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(backlog.empty());
}

}  // namespace
}  // namespace mpigate::worker
