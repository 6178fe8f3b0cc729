#include "client/executor.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/session.h"
#include "mpigate/v1/task.pb.h"

namespace mpigate {

absl::StatusOr<std::unique_ptr<Executor>> Executor::Connect(ExecutorOptions options) {
  absl::StatusOr<std::shared_ptr<internal::Session>> session = internal::Session::Open(options);
  if (!session.ok()) return session.status();
  return std::unique_ptr<Executor>(new Executor(*std::move(session)));
}

Executor::Executor(std::shared_ptr<internal::Session> session) : session_(std::move(session)) {}

Executor::~Executor() { session_->Close(); }

Future Executor::Submit(absl::string_view function, std::string payload) {
  return Submit(function, std::move(payload), SubmitOptions());
}

Future Executor::Submit(absl::string_view function, std::string payload,
                        const SubmitOptions& options) {
  return session_->Submit(function, std::move(payload), options);
}

MapResults Executor::Map(absl::string_view function, std::vector<std::string> inputs,
                         const MapOptions& options) {
  const absl::Time deadline = absl::Now() + options.timeout;
  if (options.chunksize < 1) {
    return MapResults::Failed(absl::InvalidArgumentError(
        absl::StrCat("map: chunksize must be >= 1, got ", options.chunksize)));
  }
  const size_t chunksize = static_cast<size_t>(options.chunksize);
  SubmitOptions chunk_options;
  chunk_options.payload_type = options.payload_type;
  chunk_options.run_timeout = options.run_timeout;
  chunk_options.max_retries = options.max_retries;
  std::vector<Future> chunks;
  chunks.reserve((inputs.size() + chunksize - 1) / chunksize);
  for (size_t first = 0; first < inputs.size(); first += chunksize) {
    const size_t last = std::min(first + chunksize, inputs.size());
    chunks.push_back(session_->SubmitChunk(
        function,
        std::vector<std::string>(std::make_move_iterator(inputs.begin() + first),
                                 std::make_move_iterator(inputs.begin() + last)),
        chunk_options));
  }
  return MapResults(std::move(chunks), inputs.size(), chunksize, options.unordered,
                    options.keep_going, options.timeout, deadline);
}

MapResults Executor::MapRange(absl::string_view function, std::string payload,
                              const RangeOptions& options) {
  const absl::Time deadline = absl::Now() + options.timeout;
  if (options.batch_size < 1) {
    return MapResults::Failed(absl::InvalidArgumentError(
        absl::StrCat("map_range: batch_size must be >= 1, got ", options.batch_size)));
  }
  // Indices would wrap around, repeating items (and seeds) the caller did not ask for.
  if (options.count > std::numeric_limits<uint64_t>::max() - options.first) {
    return MapResults::Failed(
        absl::InvalidArgumentError(absl::StrCat("map_range: ", options.count, " items from ",
                                                options.first, " go past the largest index")));
  }
  const uint64_t batch_size = static_cast<uint64_t>(options.batch_size);
  SubmitOptions batch_options;
  batch_options.payload_type = options.payload_type;
  batch_options.run_timeout = options.run_timeout;
  batch_options.max_retries = options.max_retries;
  v1::RangeSpec range;
  range.set_base_seed(options.base_seed);
  std::vector<Future> batches;
  batches.reserve(options.count / batch_size + (options.count % batch_size != 0 ? 1 : 0));
  for (uint64_t offset = 0; offset < options.count; offset += batch_size) {
    range.set_first(options.first + offset);
    range.set_count(std::min(batch_size, options.count - offset));
    batches.push_back(session_->SubmitRange(function, payload, range, batch_options));
  }
  return MapResults(std::move(batches), options.count, batch_size, options.unordered,
                    options.keep_going, options.timeout, deadline);
}

BroadcastFuture Executor::Broadcast(absl::string_view function, std::string payload,
                                    const SubmitOptions& options) {
  return BroadcastFuture(session_->SubmitBroadcast(function, std::move(payload), options));
}

void Executor::Shutdown(bool wait, bool cancel_futures) {
  session_->Shutdown(wait, cancel_futures);
}

absl::Status Executor::Bootup(bool wait) { return session_->Bootup(wait); }

PoolState Executor::pool_state() const { return session_->pool_state(); }

int Executor::workers() const { return session_->workers(); }

absl::StatusOr<std::vector<FunctionInfo>> Executor::ListFunctions(absl::Duration timeout) const {
  return session_->ListFunctions(timeout);
}

const std::string& Executor::resume_token() const { return session_->resume_token(); }

const std::vector<Future>& Executor::Reattached() const { return session_->reattached(); }

}  // namespace mpigate
