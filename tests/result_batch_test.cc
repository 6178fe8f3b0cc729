// ResultBatch: a task runner's results batched into one MPI message. Never calls MPI: the sender
// is the test's.
#include "worker/result_batch.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"
#include "wire/tag.h"

namespace mpigate::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct Sent {
  wire::Tag tag;
  std::string bytes;
};

// Flushes `batch` into `sent`.
absl::Status FlushInto(ResultBatch& batch, std::vector<Sent>& sent) {
  return batch.Flush([&sent](wire::Tag tag, absl::string_view bytes) {
    sent.push_back({tag, std::string(bytes)});
    return absl::OkStatus();
  });
}

std::string Result(uint64_t key, size_t bytes = 0) {
  wire::ResultFrame result;
  result.set_task_key(key);
  result.set_result(std::string(bytes, 'r'));
  return result.SerializeAsString();
}

TEST(ResultBatchTest, EmptySendsNothing) {
  ResultBatch batch;
  std::vector<Sent> sent;
  ASSERT_EQ(FlushInto(batch, sent), absl::OkStatus());
  EXPECT_THAT(sent, IsEmpty());
}

TEST(ResultBatchTest, OneResultGoesAsItCame) {
  ResultBatch batch;
  const std::string result = Result(5, 10);
  batch.Add(result);
  EXPECT_FALSE(batch.empty());
  std::vector<Sent> sent;
  ASSERT_EQ(FlushInto(batch, sent), absl::OkStatus());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].tag, wire::Tag::kResult);
  EXPECT_EQ(sent[0].bytes, result);
  EXPECT_TRUE(batch.empty());
}

TEST(ResultBatchTest, SeveralGoInOneFrameBatchInOrder) {
  ResultBatch batch;
  for (uint64_t key : {1, 2, 3}) batch.Add(Result(key));
  std::vector<Sent> sent;
  ASSERT_EQ(FlushInto(batch, sent), absl::OkStatus());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].tag, wire::Tag::kResults);
  wire::FrameBatch frames;
  ASSERT_TRUE(frames.ParseFromString(sent[0].bytes));
  EXPECT_THAT(frames.frames(), ElementsAre(Result(1), Result(2), Result(3)));
  // Emptied: the next flush starts afresh.
  batch.Add(Result(4));
  ASSERT_EQ(FlushInto(batch, sent), absl::OkStatus());
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1].tag, wire::Tag::kResult);
  EXPECT_EQ(sent[1].bytes, Result(4));
}

TEST(ResultBatchTest, FullAtTheBoundAndLargeResultsGoAlone) {
  EXPECT_FALSE(ResultBatch::GoesAlone(ResultBatch::kMaxBytes - 1));
  EXPECT_TRUE(ResultBatch::GoesAlone(ResultBatch::kMaxBytes));
  ResultBatch batch;
  batch.Add(std::string(ResultBatch::kMaxBytes / 2, 'a'));
  EXPECT_FALSE(batch.full());
  batch.Add(std::string(ResultBatch::kMaxBytes / 2, 'b'));
  EXPECT_TRUE(batch.full());
  std::vector<Sent> sent;
  ASSERT_EQ(FlushInto(batch, sent), absl::OkStatus());
  EXPECT_FALSE(batch.full());
}

TEST(ResultBatchTest, ASendErrorComesBackAndTheBatchIsEmptied) {
  ResultBatch batch;
  batch.Add(Result(1));
  const absl::Status status = batch.Flush(
      [](wire::Tag, absl::string_view) { return absl::UnavailableError("gateway gone"); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(batch.empty());
}

}  // namespace
}  // namespace mpigate::worker
