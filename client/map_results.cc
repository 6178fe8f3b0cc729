#include "client/map_results.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/done_queue.h"
#include "client/internal/future_core.h"
#include "client/internal/session.h"

namespace mpigate {

struct MapResults::State {
  ~State() { CancelChunks(internal::CancelMode::kPendingOnly); }

  // Makes the next chunk's results current: the next in input order, or with `done` the next to
  // complete. An error, which ends the iteration, if the deadline passes first or, without
  // keep_going, the chunk as a whole failed; with keep_going such a chunk's error becomes each of
  // its items' result. Sets `index` to the error's item (kNoIndex for the deadline).
  absl::Status ReadChunk();

  // Ends the iteration: the chunks not yet started are cancelled, without waiting for the answer.
  void End() {
    ended = true;
    CancelChunks(internal::CancelMode::kPendingOnly);
  }
  // Asks the service, without waiting for the answer, to cancel the chunks still pending
  // (kPendingOnly: the iteration ended), or to cancel or kill every chunk not done (kKill:
  // MapResults::Kill(), from any thread).
  void CancelChunks(internal::CancelMode mode) const;

  // Constant after construction; CancelChunks() reads them from any thread.
  std::vector<Future> chunks;
  size_t inputs = 0;
  size_t chunksize = 1;
  bool keep_going = false;
  // A map that could not be submitted (MapResults::Failed): its error is no item's.
  bool not_submitted = false;
  absl::Duration timeout;
  absl::Time deadline;
  // Unordered maps only.
  std::shared_ptr<internal::DoneQueue> done;

  size_t chunks_read = 0;
  size_t results_yielded = 0;
  // The current chunk's results, and the next to yield.
  size_t current_chunk = 0;
  std::vector<absl::StatusOr<std::string>> items;
  size_t next_item = 0;
  // MapResults::index().
  size_t index = kNoIndex;
  bool ended = false;
};

absl::Status MapResults::State::ReadChunk() {
  size_t chunk = chunks_read;
  bool ready;
  if (done != nullptr) {
    std::optional<size_t> popped = done->Pop(deadline);
    ready = popped.has_value();
    if (ready) chunk = *popped;
  } else {
    ready = internal::FutureAccess::Core(chunks[chunk])->Await(deadline, /*started=*/false);
  }
  if (!ready) {
    index = kNoIndex;
    return absl::DeadlineExceededError(
        absl::StrCat("map timed out after ", absl::FormatDuration(timeout), ": ",
                     inputs - results_yielded, " of ", inputs, " results not yet returned"));
  }
  ++chunks_read;
  current_chunk = chunk;
  next_item = 0;
  const std::shared_ptr<internal::FutureCore>& core = internal::FutureAccess::Core(chunks[chunk]);
  const size_t expected = std::min(chunksize, inputs - chunk * chunksize);
  // A whole chunk failed: rejected, cancelled, or the connection lost.
  absl::Status failed = core->Exception(absl::ZeroDuration());
  if (failed.ok()) {
    items = core->TakeItems();
    if (items.size() == expected) return absl::OkStatus();
    failed = absl::InternalError(absl::StrCat("the service returned ", items.size(),
                                              " results for a chunk of ", expected, " inputs"));
  }
  if (!keep_going) {
    index = not_submitted ? kNoIndex : chunk * chunksize;
    return failed;
  }
  items.assign(expected, failed);
  return absl::OkStatus();
}

void MapResults::State::CancelChunks(internal::CancelMode mode) const {
  std::vector<uint64_t> task_ids;
  std::shared_ptr<internal::Session> session;
  for (const Future& chunk : chunks) {
    // Only pending chunks can be cancelled; killing takes the running ones too.
    const bool wanted = mode == internal::CancelMode::kPendingOnly
                            ? chunk.state() == FutureState::kPending
                            : !chunk.Done();
    if (!wanted) continue;
    const std::shared_ptr<internal::FutureCore>& core = internal::FutureAccess::Core(chunk);
    if (session == nullptr) session = core->session().lock();
    task_ids.push_back(core->task_id());
  }
  // No session: the executor is gone and every chunk has ended.
  if (session != nullptr) session->Cancel(std::move(task_ids), /*wait=*/false, mode);
}

MapResults::MapResults(std::vector<Future> chunks, size_t inputs, size_t chunksize, bool unordered,
                       bool keep_going, absl::Duration timeout, absl::Time deadline)
    : state_(std::make_unique<State>()) {
  state_->chunks = std::move(chunks);
  state_->inputs = inputs;
  state_->chunksize = chunksize;
  state_->keep_going = keep_going;
  state_->timeout = timeout;
  state_->deadline = deadline;
  if (unordered) state_->done = internal::DoneQueue::Watch(state_->chunks);
}

MapResults MapResults::Failed(absl::Status error) {
  // One chunk of one input that has already failed: the first Next() yields its error.
  MapResults results({internal::FutureCore::Failed(0, std::move(error))}, /*inputs=*/1,
                     /*chunksize=*/1, /*unordered=*/false, /*keep_going=*/false,
                     absl::InfiniteDuration(), absl::InfiniteFuture());
  results.state_->not_submitted = true;
  return results;
}

MapResults::MapResults(MapResults&&) = default;
MapResults& MapResults::operator=(MapResults&&) = default;
MapResults::~MapResults() = default;

std::optional<absl::StatusOr<std::string>> MapResults::Next() {
  if (state_ == nullptr) return std::nullopt;
  State& state = *state_;
  state.index = kNoIndex;
  if (state.ended) return std::nullopt;
  while (state.next_item == state.items.size()) {
    if (state.chunks_read == state.chunks.size()) {
      state.ended = true;
      return std::nullopt;
    }
    if (absl::Status status = state.ReadChunk(); !status.ok()) {
      state.End();
      return status;
    }
  }
  state.index = state.current_chunk * state.chunksize + state.next_item;
  absl::StatusOr<std::string> result = std::move(state.items[state.next_item++]);
  ++state.results_yielded;
  if (!result.ok() && !state.keep_going) state.End();
  return result;
}

size_t MapResults::index() const { return state_ == nullptr ? kNoIndex : state_->index; }

void MapResults::Close() {
  if (state_ != nullptr) state_->End();
}

void MapResults::Kill() {
  if (state_ != nullptr) state_->CancelChunks(internal::CancelMode::kKill);
}

}  // namespace mpigate
