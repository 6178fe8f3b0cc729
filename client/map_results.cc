#include "client/map_results.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/internal/done_queue.h"
#include "client/internal/future_core.h"
#include "client/internal/session.h"

namespace mpigate {

struct MapResults::State {
  ~State() { CancelUnstarted(); }

  // Makes the next chunk's results current: the next in input order, or with `done` the next to
  // complete. An error if the deadline passes first or the chunk as a whole failed.
  absl::Status ReadChunk();

  // Ends the iteration: the chunks not yet started are cancelled, without waiting for the answer.
  void End() {
    ended = true;
    CancelUnstarted();
  }
  void CancelUnstarted();

  std::vector<Future> chunks;
  size_t inputs = 0;
  size_t chunksize = 1;
  absl::Duration timeout;
  absl::Time deadline;
  // Unordered maps only.
  std::shared_ptr<internal::DoneQueue> done;

  size_t chunks_read = 0;
  size_t results_yielded = 0;
  // The current chunk's results, and the next to yield.
  std::vector<absl::StatusOr<std::string>> items;
  size_t next_item = 0;
  bool ended = false;
};

absl::Status MapResults::State::ReadChunk() {
  size_t index = chunks_read;
  bool ready;
  if (done != nullptr) {
    std::optional<size_t> popped = done->Pop(deadline);
    ready = popped.has_value();
    if (ready) index = *popped;
  } else {
    ready = internal::FutureAccess::Core(chunks[index])->Await(deadline, /*started=*/false);
  }
  if (!ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("map timed out after ", absl::FormatDuration(timeout), ": ",
                     inputs - results_yielded, " of ", inputs, " results not yet returned"));
  }
  ++chunks_read;
  const std::shared_ptr<internal::FutureCore>& core = internal::FutureAccess::Core(chunks[index]);
  // A whole chunk failed: rejected, cancelled, or the connection lost.
  if (absl::Status status = core->Exception(absl::ZeroDuration()); !status.ok()) return status;
  items = core->TakeItems();
  next_item = 0;
  const size_t expected = std::min(chunksize, inputs - index * chunksize);
  if (items.size() != expected) {
    return absl::InternalError(absl::StrCat("the service returned ", items.size(),
                                            " results for a chunk of ", expected, " inputs"));
  }
  return absl::OkStatus();
}

void MapResults::State::CancelUnstarted() {
  std::vector<uint64_t> unstarted;
  std::shared_ptr<internal::Session> session;
  for (const Future& chunk : chunks) {
    if (chunk.state() != FutureState::kPending) continue;
    const std::shared_ptr<internal::FutureCore>& core = internal::FutureAccess::Core(chunk);
    if (session == nullptr) session = core->session().lock();
    unstarted.push_back(core->task_id());
  }
  // No session: the executor is gone and every chunk has ended.
  if (session != nullptr) {
    session->Cancel(std::move(unstarted), /*wait=*/false, internal::CancelMode::kPendingOnly);
  }
}

MapResults::MapResults(std::vector<Future> chunks, size_t inputs, size_t chunksize, bool unordered,
                       absl::Duration timeout, absl::Time deadline)
    : state_(std::make_unique<State>()) {
  state_->chunks = std::move(chunks);
  state_->inputs = inputs;
  state_->chunksize = chunksize;
  state_->timeout = timeout;
  state_->deadline = deadline;
  if (unordered) state_->done = internal::DoneQueue::Watch(state_->chunks);
}

MapResults MapResults::Failed(absl::Status error) {
  // One chunk of one input that has already failed: the first Next() yields its error.
  return MapResults({internal::FutureCore::Failed(0, std::move(error))}, /*inputs=*/1,
                    /*chunksize=*/1, /*unordered=*/false, absl::InfiniteDuration(),
                    absl::InfiniteFuture());
}

MapResults::MapResults(MapResults&&) = default;
MapResults& MapResults::operator=(MapResults&&) = default;
MapResults::~MapResults() = default;

std::optional<absl::StatusOr<std::string>> MapResults::Next() {
  if (state_ == nullptr || state_->ended) return std::nullopt;
  State& state = *state_;
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
  absl::StatusOr<std::string> result = std::move(state.items[state.next_item++]);
  ++state.results_yielded;
  if (!result.ok()) state.End();
  return result;
}

}  // namespace mpigate
