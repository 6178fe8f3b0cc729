// SubmitBatcher (client/internal/submit_batcher.h): a batch split into `submit` messages under
// the size limit, a write that fails mid-batch, and which specs a resumed session sends again.
#include "client/internal/submit_batcher.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mpigate::internal {
namespace {

// Records what is written; fails every write after the first `writable`.
class RecordingStream final : public SessionStream {
 public:
  explicit RecordingStream(size_t writable = SIZE_MAX) : writable_(writable) {}
  bool Write(const v1::SessionRequest& request) override {
    if (written.size() == writable_) return false;
    written.push_back(request);
    return true;
  }
  bool Read(v1::SessionEvent*) override { return false; }
  void Cancel() override {}
  absl::Status Finish() override { return absl::OkStatus(); }

  std::vector<v1::SessionRequest> written;

 private:
  const size_t writable_;
};

OutgoingTask Task(uint64_t task_id, size_t payload_bytes = 10) {
  OutgoingTask task = SubmitBatcher::NewTask("echo", SubmitOptions());
  task.spec.set_payload(std::string(payload_bytes, 'x'));
  task.spec.set_task_id(task_id);
  task.wire_bytes = SubmitBatcher::WireBytes(task.spec);
  return task;
}

std::vector<uint64_t> Ids(const std::vector<OutgoingTask>& tasks) {
  std::vector<uint64_t> ids;
  for (const OutgoingTask& task : tasks) ids.push_back(task.spec.task_id());
  return ids;
}

std::vector<uint64_t> Ids(const v1::SessionRequest& request) {
  std::vector<uint64_t> ids;
  for (const v1::TaskSpec& spec : request.submit().tasks()) ids.push_back(spec.task_id());
  return ids;
}

TEST(SubmitBatcherTest, ABurstIsOneMessage) {
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 100; ++id) batch.push_back(Task(id));
  RecordingStream stream;
  ASSERT_TRUE(SubmitBatcher::Write(stream, batch, 4 << 20));
  ASSERT_EQ(stream.written.size(), 1u);
  EXPECT_EQ(Ids(stream.written[0]), Ids(batch));
  // The specs are back in the batch, for KeepSent(), payloads and all.
  EXPECT_EQ(batch[0].spec.payload(), std::string(10, 'x'));
}

TEST(SubmitBatcherTest, MessagesStayUnderTheLimitAndALargeTaskGoesAlone) {
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 5; ++id) batch.push_back(Task(id, 300));
  batch.push_back(Task(6, 900));
  const size_t limit = 1000;
  for (const OutgoingTask& task : batch) ASSERT_TRUE(SubmitBatcher::Fits(task.wire_bytes, limit));
  RecordingStream stream;
  ASSERT_TRUE(SubmitBatcher::Write(stream, batch, limit));
  std::vector<uint64_t> all;
  for (const v1::SessionRequest& request : stream.written) {
    EXPECT_LE(request.ByteSizeLong(), limit);
    for (uint64_t id : Ids(request)) all.push_back(id);
  }
  EXPECT_EQ(all, Ids(batch));
  EXPECT_EQ(stream.written.size(), 4u);  // 3 + 2 tasks of 300 bytes, then the large one.
  EXPECT_EQ(Ids(stream.written.back()), (std::vector<uint64_t>{6}));
  EXPECT_FALSE(SubmitBatcher::Fits(Task(7, 1000).wire_bytes, limit));
}

TEST(SubmitBatcherTest, AFailedWriteStopsAndKeepsEverySpec) {
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 6; ++id) batch.push_back(Task(id, 300));
  RecordingStream stream(/*writable=*/1);
  EXPECT_FALSE(SubmitBatcher::Write(stream, batch, 1000));
  EXPECT_EQ(stream.written.size(), 1u);
  EXPECT_EQ(Ids(batch), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  for (const OutgoingTask& task : batch) EXPECT_EQ(task.spec.payload().size(), 300u);
}

TEST(SubmitBatcherTest, AResumedSessionGetsAgainWhatTheServiceLacksFirst) {
  SubmitBatcher submits;
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 3; ++id) submits.Queue(Task(id));
  submits.TakeQueued(batch);
  EXPECT_FALSE(submits.has_queued());
  submits.KeepSent(batch);
  EXPECT_TRUE(batch.empty());
  for (uint64_t id = 4; id <= 5; ++id) submits.Queue(Task(id));
  submits.TakeQueued(batch);
  submits.KeepSent(batch);
  submits.Queue(Task(6));
  // The service had 1 and 2 when the stream broke.
  submits.RequeueAfter(2);
  submits.TakeQueued(batch);
  EXPECT_EQ(Ids(batch), (std::vector<uint64_t>{3, 4, 5, 6}));
}

TEST(SubmitBatcherTest, SpecsTheServiceHasAreLetGo) {
  SubmitBatcher submits;
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 4; ++id) {
    submits.Queue(Task(id));
    submits.TakeQueued(batch);
    submits.KeepSent(batch);
  }
  // An event named task 3: 1 to 3 are had, and a resume after 0 sends only 4 again.
  submits.ReceivedUpTo(3);
  submits.RequeueAfter(0);
  submits.TakeQueued(batch);
  EXPECT_EQ(Ids(batch), (std::vector<uint64_t>{4}));
}

TEST(SubmitBatcherTest, NewTaskAppliesTheOptions) {
  SubmitOptions options;
  options.queue_timeout = absl::Microseconds(100);
  options.run_timeout = absl::Milliseconds(2500);
  options.max_retries = 3;
  options.gang_size = 2;
  options.payload_type = "pkg.Request";
  const v1::TaskSpec spec = SubmitBatcher::NewTask("fn", options).spec;
  EXPECT_EQ(spec.function(), "fn");
  EXPECT_EQ(spec.payload_type(), "pkg.Request");
  EXPECT_EQ(spec.options().queue_timeout_ms(), 1u);  // Rounded up: 0 would be no limit.
  EXPECT_EQ(spec.options().run_timeout_ms(), 2500u);
  EXPECT_EQ(spec.options().max_retries(), 3u);
  EXPECT_EQ(spec.options().gang_size(), 2u);
  EXPECT_EQ(SubmitBatcher::NewTask("fn", SubmitOptions()).spec.options().queue_timeout_ms(), 0u);
}

TEST(SubmitBatcherTest, DefaultOptionsAddNothingToTheSpec) {
  // Every task of a submit loop would otherwise carry (and the gateway parse) an empty message.
  EXPECT_FALSE(SubmitBatcher::NewTask("fn", SubmitOptions()).spec.has_options());
  SubmitOptions retried;
  retried.max_retries = 1;
  EXPECT_TRUE(SubmitBatcher::NewTask("fn", retried).spec.has_options());
}

TEST(SubmitBatcherTest, TheStorageOfABatchTheServiceHasQueuesTheNextSpecs) {
  SubmitBatcher submits;
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 100; ++id) submits.Queue(Task(id));
  submits.TakeQueued(batch);
  const size_t capacity = batch.capacity();
  submits.KeepSent(batch);
  submits.ReceivedUpTo(100);
  submits.Queue(Task(101));
  submits.TakeQueued(batch);
  EXPECT_EQ(Ids(batch), (std::vector<uint64_t>{101}));
  EXPECT_EQ(batch.capacity(), capacity);
}

TEST(SubmitBatcherTest, AHugeBatchsStorageIsNotKept) {
  SubmitBatcher submits;
  std::vector<OutgoingTask> batch;
  for (uint64_t id = 1; id <= 5000; ++id) submits.Queue(Task(id, 0));
  submits.TakeQueued(batch);
  submits.KeepSent(batch);
  submits.ReceivedUpTo(5000);
  submits.Queue(Task(5001));
  submits.TakeQueued(batch);
  EXPECT_LT(batch.capacity(), 5000u);
}

}  // namespace
}  // namespace mpigate::internal
