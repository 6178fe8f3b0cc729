#include "server/pool_view.h"

#include <algorithm>

#include "absl/status/status.h"
#include "common/grpc_status.h"

namespace mpigate::server {

void SessionTally::Ended(v1::TaskState state, int64_t second) {
  switch (state) {
    case v1::TASK_STATE_SUCCEEDED:
      ++succeeded_;
      break;
    case v1::TASK_STATE_CANCELLED:
      ++cancelled_;
      break;
    default:
      ++failed_;
      break;
  }
  ended_.Add(second);
}

void SessionTally::AppendTo(absl::Time now, absl::Time opened, v1::SessionStatus& status) const {
  status.set_tasks_succeeded(succeeded_);
  status.set_tasks_failed(failed_);
  status.set_tasks_cancelled(cancelled_);
  status.set_recent_tasks_per_second(ended_.PerSecond(now, opened, /*window_seconds=*/10));
}

PoolView::PoolView(int workers) : workers_(static_cast<size_t>(std::max(workers, 0))) {}

void PoolView::SetProcess(int worker, absl::string_view host, int pid, int runner_pid) {
  if (worker < 0 || static_cast<size_t>(worker) >= workers_.size()) return;
  Worker& state = workers_[static_cast<size_t>(worker)];
  state.host = std::string(host);
  state.pid = pid;
  state.runner_pid = runner_pid;
}

void PoolView::Reported(int worker, bool failed, int runner_pid) {
  if (worker < 0 || static_cast<size_t>(worker) >= workers_.size()) return;
  Worker& state = workers_[static_cast<size_t>(worker)];
  ++state.done;
  if (failed) ++state.failed;
  if (runner_pid != 0) state.runner_pid = runner_pid;
}

void PoolView::Failed(absl::Time when, uint64_t session, absl::string_view client_name,
                      uint64_t task_id, absl::string_view function,
                      const v1::TaskOutcome& outcome) {
  v1::FailureRecord& record = failures_[next_failure_++ % kMaxFailures];
  record.set_unix_ms(absl::ToUnixMillis(when));
  record.set_session_id(session);
  // Assigned in place, so that a record's strings reuse the capacity of the one it replaces.
  const absl::string_view name = CutUtf8(client_name, kMaxClientNameBytes);
  record.mutable_client_name()->assign(name.data(), name.size());
  record.set_task_id(task_id);
  record.mutable_function()->assign(function.data(), function.size());
  record.set_worker(outcome.worker());
  record.set_code(absl::StatusCodeToString(CanonicalCode(outcome.error().code())));
  const absl::string_view message = CutUtf8(outcome.error().message(), kMaxMessageBytes);
  record.mutable_message()->assign(message.data(), message.size());
}

void PoolView::AppendTo(absl::Time now, absl::Time started, v1::PoolStatus& status) const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    const Worker& worker = workers_[i];
    v1::WorkerStatus& entry = *status.add_worker_list();
    entry.set_worker(static_cast<uint32_t>(i));
    entry.set_host(worker.host);
    entry.set_pid(worker.pid);
    entry.set_runner_pid(worker.runner_pid);
    entry.set_tasks_done(worker.done);
    entry.set_tasks_failed(worker.failed);
  }
  const uint64_t kept = std::min<uint64_t>(next_failure_, kMaxFailures);
  for (uint64_t i = 1; i <= kept; ++i) {
    *status.add_recent_failures() = failures_[(next_failure_ - i) % kMaxFailures];
  }
  const int64_t last = absl::ToUnixSeconds(now);
  const int64_t first = std::max(last - static_cast<int64_t>(kHistorySeconds) + 1,
                                 std::min(absl::ToUnixSeconds(started), last));
  for (int64_t second = first; second <= last; ++second) {
    status.add_tasks_ended_per_second(static_cast<uint32_t>(history_.At(second)));
  }
}

absl::string_view CutUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  // Back off continuation bytes (10xxxxxx) to the start of the sequence they belong to, and leave
  // that sequence out.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace mpigate::server
