#include "client/wait.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/done_queue.h"
#include "client/internal/future_core.h"

namespace mpigate {
namespace {

// `futures` without repeats, in the order of their first appearance.
std::vector<Future> Unique(std::vector<Future> futures) {
  absl::flat_hash_set<Future> seen;
  seen.reserve(futures.size());
  std::vector<Future> unique;
  unique.reserve(futures.size());
  for (Future& future : futures) {
    if (seen.insert(future).second) unique.push_back(std::move(future));
  }
  return unique;
}

}  // namespace

CompletedFutures::CompletedFutures(std::vector<Future> futures, absl::Duration timeout)
    : futures_(Unique(std::move(futures))),
      timeout_(timeout),
      deadline_(absl::Now() + timeout),
      done_(internal::DoneQueue::Watch(futures_)) {}

std::optional<absl::StatusOr<Future>> CompletedFutures::Next() {
  if (ended_ || yielded_ == futures_.size()) return std::nullopt;
  std::optional<size_t> index = done_->Pop(deadline_);
  if (!index.has_value()) {
    ended_ = true;
    return absl::DeadlineExceededError(
        absl::StrCat("as_completed timed out after ", absl::FormatDuration(timeout_), ": ",
                     futures_.size() - yielded_, " (of ", futures_.size(), ") futures unfinished"));
  }
  ++yielded_;
  return futures_[*index];
}

CompletedFutures AsCompleted(std::vector<Future> futures, absl::Duration timeout) {
  return CompletedFutures(std::move(futures), timeout);
}

DoneAndNotDone Wait(const std::vector<Future>& futures, absl::Duration timeout,
                    ReturnWhen return_when) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<Future> unique = Unique(futures);
  std::shared_ptr<internal::DoneQueue> done = internal::DoneQueue::Watch(unique);
  for (size_t finished = 0; finished < unique.size(); ++finished) {
    std::optional<size_t> index = done->Pop(deadline);
    if (!index.has_value()) break;
    if (return_when == ReturnWhen::kFirstCompleted) break;
    if (return_when == ReturnWhen::kFirstException &&
        internal::FutureAccess::Core(unique[*index])->Failed()) {
      break;
    }
  }
  // Everything done by now, including futures that finished after the condition was met.
  DoneAndNotDone split;
  for (Future& future : unique) {
    (future.Done() ? split.done : split.not_done).push_back(std::move(future));
  }
  return split;
}

}  // namespace mpigate
