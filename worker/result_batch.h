// ResultBatch: the task runner's results, serialized as it wrote them, held briefly so that those
// it wrote in a burst go to the gateway in one MPI message (Tag::kResults, a FrameBatch) instead
// of one each; a large one goes alone, as it came, so that its payload is not copied again.
//
// Pure logic: what to send is handed to a sender the caller gives (the MPI send, or a test's).
// Thread-safety: not thread-safe; owned by the worker's MPI thread.
#ifndef MPIGATE_WORKER_RESULT_BATCH_H_
#define MPIGATE_WORKER_RESULT_BATCH_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"
#include "wire/tag.h"

namespace mpigate::worker {

class ResultBatch {
 public:
  // A batch this large goes at once; a result this large goes alone.
  static constexpr size_t kMaxBytes = 256 << 10;

  // Whether a result of `bytes` goes in a message of its own: flush the batch before adding it.
  static bool GoesAlone(size_t bytes) { return bytes >= kMaxBytes; }

  // Holds a serialized ResultFrame.
  void Add(std::string result) {
    bytes_ += result.size();
    results_.push_back(std::move(result));
  }

  // Holds enough to go now, whether or not more results are at hand.
  bool full() const { return bytes_ >= kMaxBytes; }
  bool empty() const { return results_.empty(); }

  // Hands `send(wire::Tag, absl::string_view)` (which returns an absl::Status) the one message
  // that carries the results held, and empties the batch: a single result as it is (kResult),
  // several in one FrameBatch (kResults). Sends nothing when empty.
  template <typename Send>
  absl::Status Flush(Send&& send) {
    if (results_.empty()) return absl::OkStatus();
    absl::Status status;
    if (results_.size() == 1) {
      status = send(wire::Tag::kResult, absl::string_view(results_[0]));
    } else {
      wire::FrameBatch batch;
      for (std::string& result : results_) batch.add_frames(std::move(result));
      absl::StatusOr<std::string> encoded = wire::Encode(batch);
      status =
          encoded.ok() ? send(wire::Tag::kResults, absl::string_view(*encoded)) : encoded.status();
    }
    results_.clear();
    bytes_ = 0;
    return status;
  }

 private:
  std::vector<std::string> results_;
  size_t bytes_ = 0;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_RESULT_BATCH_H_
