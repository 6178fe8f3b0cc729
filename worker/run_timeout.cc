#include "worker/run_timeout.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "wire/wire_error.h"

namespace mpigate::worker {

absl::Time RunDeadline(uint64_t run_timeout_ms, absl::Time start) {
  if (run_timeout_ms == 0) return absl::InfiniteFuture();
  return start + absl::Milliseconds(static_cast<int64_t>(
                     std::min<uint64_t>(run_timeout_ms, std::numeric_limits<int64_t>::max())));
}

void FailPastDeadline(uint64_t run_timeout_ms, absl::string_view how, wire::ResultFrame& result) {
  const uint64_t key = result.task_key();
  const uint64_t run_us = result.run_us();
  result.Clear();
  result.set_task_key(key);
  result.set_run_us(run_us);
  wire::SetError(absl::DeadlineExceededError(absl::StrCat("task ran past its run timeout of ",
                                                          run_timeout_ms, " ms and was ", how)),
                 *result.mutable_error());
}

}  // namespace mpigate::worker
