// A stand-in for mpigate-runner that floods its worker (runner_process_test): after its hello it
// writes results without reading anything, as a runner whose tasks end faster than the worker
// takes their results would, and only then reads tasks. A worker that blocks writing tasks while
// this blocks writing results deadlocks with it.
//
//   flooding_runner RESULTS RESULT_BYTES TASKS
//
// writes RESULTS results (task keys 1..RESULTS) of RESULT_BYTES bytes each, then reads TASKS task
// frames and answers with one result, task key 0, whose bytes say how many tasks and payload bytes
// it read ("TASKS PAYLOAD_BYTES"); then waits for the stream to end.
#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "wire/frames.pb.h"
#include "wire/stream_frames.h"

namespace {

// Where RunnerProcess puts the runner's end of the socket.
constexpr int kSocketFd = 3;

}  // namespace

int main(int argc, char** argv) {
  using namespace mpigate::wire;
  uint64_t results = 0;
  uint64_t result_bytes = 0;
  uint64_t tasks = 0;
  if (argc != 4 || !absl::SimpleAtoi(argv[1], &results) ||
      !absl::SimpleAtoi(argv[2], &result_bytes) || !absl::SimpleAtoi(argv[3], &tasks)) {
    return 2;
  }
  if (!WriteFrame(kSocketFd, Tag::kHello, HelloFrame()).ok()) return 1;
  ResultFrame result;
  result.set_result(std::string(result_bytes, 'r'));
  for (uint64_t key = 1; key <= results; ++key) {
    result.set_task_key(key);
    if (!WriteFrame(kSocketFd, Tag::kResult, result).ok()) return 1;
  }
  FrameReader reader(kSocketFd);
  uint64_t payload_bytes = 0;
  for (uint64_t i = 0; i < tasks; ++i) {
    absl::StatusOr<StreamFrame> frame = reader.Next();
    TaskFrame task;
    if (!frame.ok() || frame->tag != Tag::kTask || !task.ParseFromString(frame->bytes)) return 1;
    payload_bytes += task.payload().size();
  }
  ResultFrame tally;
  tally.set_result(absl::StrCat(tasks, " ", payload_bytes));
  if (!WriteFrame(kSocketFd, Tag::kResult, tally).ok()) return 1;
  // Until the worker closes its end.
  return reader.Next().ok() ? 1 : 0;
}
