#include "worker/gang_runner.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "wire/mpi_frames.h"
#include "wire/wire_error.h"
#include "worker/gang.h"
#include "worker/run_timeout.h"
#include "worker/task_runner.h"

namespace mpigate::worker {
namespace {

// While a gang task runs, how often its function's polls look at the gateway. A gang's collective
// calls cost microseconds, so polls come often; this keeps them cheap and an interrupt prompt.
constexpr absl::Duration kListenDuringGang = absl::Milliseconds(1);

// The MPI thread's ear while it runs a gang function: the function's polls of cancelled() listen
// to the gateway through it. A shutdown cannot be answered mid-call, so it interrupts the call and
// is remembered for the loop to answer after it.
//
// Thread-safety: Poll() may be called from any thread but does something only on the thread that
// made the listener (the MPI thread); the accessors are for that thread, after the call.
class GangListener final : public GangLink {
 public:
  GangListener(GatewayLink& link, uint64_t task_key, absl::Time deadline, TaskSignals& signals)
      : link_(link),
        task_key_(task_key),
        deadline_(deadline),
        signals_(signals),
        mpi_thread_(std::this_thread::get_id()) {}

  void Poll() override {
    // Other threads of the function (an OpenMP team, say) only read the flag: MPI is not theirs.
    if (std::this_thread::get_id() != mpi_thread_ || shutdown_ || !status_.ok()) return;
    const absl::Time now = absl::Now();
    if (now < next_listen_) return;
    next_listen_ = now + kListenDuringGang;
    // Progress keeps the pace it has for other tasks: a gang polls far more often than anyone
    // wants to hear how far it has got.
    if (now >= next_progress_) {
      next_progress_ = now + kListenWhileBusy;
      status_ = link_.ForwardProgress(task_key_, signals_);
    }
    if (status_.ok()) {
      absl::StatusOr<Heard> heard = link_.Hear();
      status_ = heard.status();
      // A gang runs in the worker itself: even a forced cancel can only interrupt it.
      bool force = false;
      if (heard.ok() && heard->Cancels(task_key_, force)) {
        signals_.cancelled.store(true, std::memory_order_relaxed);
      }
      shutdown_ = heard.ok() && heard->shutdown;
    }
    timed_out_ = timed_out_ || now >= deadline_;
    // A shutdown, the run timeout, or a gateway that cannot be heard stops the call; the loop
    // acts after it.
    if (shutdown_ || timed_out_ || !status_.ok()) {
      signals_.cancelled.store(true, std::memory_order_relaxed);
    }
  }

  // The first error in talking to the gateway.
  const absl::Status& status() const { return status_; }
  // True if the gateway said shut down during the call.
  bool shutdown() const { return shutdown_; }
  // True if the call ran past its run timeout.
  bool timed_out() const { return timed_out_; }

 private:
  GatewayLink& link_;
  const uint64_t task_key_;
  const absl::Time deadline_;
  TaskSignals& signals_;
  const std::thread::id mpi_thread_;
  absl::Time next_listen_ = absl::InfinitePast();
  absl::Time next_progress_ = absl::InfinitePast();
  bool shutdown_ = false;
  bool timed_out_ = false;
  absl::Status status_;
};

// The gang's own communicator, made by its members alone (MPI_Comm_create_group), so that no other
// worker and not the gateway need take part. The tag comes from the task's key so that the making
// of one gang's communicator cannot match another's.
absl::StatusOr<MPI_Comm> MakeGangComm(const WorkerGroup& workers, const wire::TaskFrame& task) {
  std::vector<int> ranks;
  ranks.reserve(task.gang_size());
  for (const int worker : task.gang()) ranks.push_back(workers.first_rank + worker);
  MPI_Group all = MPI_GROUP_NULL;
  if (const int rc = MPI_Comm_group(workers.comm, &all); rc != MPI_SUCCESS) {
    return wire::MpiError(rc, "MPI_Comm_group");
  }
  MPI_Group members = MPI_GROUP_NULL;
  const int incl_rc = MPI_Group_incl(all, static_cast<int>(ranks.size()), ranks.data(), &members);
  MPI_Group_free(&all);
  if (incl_rc != MPI_SUCCESS) return wire::MpiError(incl_rc, "MPI_Group_incl");

  // MPI guarantees tags up to at least 32767; MPI_TAG_UB says how far beyond.
  int* tag_ub = nullptr;
  int has_tag_ub = 0;
  MPI_Comm_get_attr(workers.comm, MPI_TAG_UB, &tag_ub, &has_tag_ub);
  const uint64_t tags = static_cast<uint64_t>(has_tag_ub ? *tag_ub : 32767) + 1;
  const int tag = static_cast<int>(task.task_key() % tags);

  MPI_Comm comm = MPI_COMM_NULL;
  const int create_rc = MPI_Comm_create_group(workers.comm, members, tag, &comm);
  MPI_Group_free(&members);
  if (create_rc != MPI_SUCCESS) return wire::MpiError(create_rc, "MPI_Comm_create_group");
  if (absl::Status status = wire::ReturnErrors(comm); !status.ok()) {
    MPI_Comm_free(&comm);
    return status;
  }
  return comm;
}

}  // namespace

absl::StatusOr<bool> GangRunner::Run(absl::string_view frame) {
  if (absl::Status status = wire::Decode(frame, task_); !status.ok()) return status;
  signals_.Reset();
  result_.set_task_key(task_.task_key());
  const TaskContext context(rank_, pool_size_, &signals_.cancelled, &signals_);
  // Its function may block in a collective for as long as it likes, not listening.
  if (absl::Status status = link_.Quiet(); !status.ok()) return status;
  bool shutdown = false;
  const auto me = std::find(task_.gang().begin(), task_.gang().end(), rank_);
  if (me == task_.gang().end()) {
    wire::SetError(absl::InternalError(absl::StrCat("worker ", rank_,
                                                    " was sent a gang task it is not a member of")),
                   *result_.mutable_error());
  } else if (absl::StatusOr<MPI_Comm> comm = MakeGangComm(workers_, task_); !comm.ok()) {
    wire::SetError(comm.status(), *result_.mutable_error());
  } else {
    GangListener listener(link_, task_.task_key(), RunDeadline(task_.run_timeout_ms(), absl::Now()),
                          signals_);
    const GangContext gang(context, *comm, static_cast<int>(me - task_.gang().begin()),
                           task_.gang_size(), &listener);
    result_ = RunGangTask(registry_, gang, task_);
    if (listener.timed_out()) FailPastDeadline(task_.run_timeout_ms(), "interrupted", result_);
    if (const int rc = MPI_Comm_free(&*comm); rc != MPI_SUCCESS) {
      return wire::MpiError(rc, "MPI_Comm_free");
    }
    if (!listener.status().ok()) return listener.status();
    shutdown = listener.shutdown();
  }
  link_.Loud();
  if (shutdown) return true;
  absl::Status answered = link_.Answer(result_);
  result_.Clear();
  if (!answered.ok()) return answered;
  return false;
}

}  // namespace mpigate::worker
