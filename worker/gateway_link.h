// GatewayLink: the worker's side of its MPI link to the gateway. It hears the gateway (tasks into
// the backlog, cancels, heartbeat requests, the shutdown), sends what the worker has to say (hello,
// results, progress, heartbeats, goodbye), batches a task runner's results (ResultBatch), watches
// the doorbell the gateway rings after each frame it sends (wire/doorbell.h), and rings the
// gateway back after a result it would otherwise find late.
//
// It exists so that the executors and the gang runner share one way of listening and answering:
// the rules of what a frame means and when heartbeats go live here only.
//
// Thread-safety: not thread-safe; makes MPI calls, so only the worker's MPI thread may call it.
#ifndef MPIGATE_WORKER_GATEWAY_LINK_H_
#define MPIGATE_WORKER_GATEWAY_LINK_H_

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "wire/doorbell.h"
#include "wire/frames.pb.h"
#include "wire/tag.h"
#include "worker/result_batch.h"
#include "worker/task_backlog.h"
#include "worker/task_signals.h"

namespace mpigate::worker {

// The gateway's rank in the worker's communicator with it.
inline constexpr int kGatewayRank = 0;

// While a task runs, how often the MPI thread listens to the gateway and forwards progress. A
// result is picked up as soon as it is ready regardless; this bounds how late an interrupt or a
// shutdown is heard.
inline constexpr absl::Duration kListenWhileBusy = absl::Milliseconds(20);

// What the gateway said since the worker last listened.
struct Heard {
  // Any frame at all.
  bool anything = false;
  bool shutdown = false;
  // Cancels of tasks that were not waiting in the backlog: the running one, one queued in the task
  // runner, or one that has already ended.
  std::vector<wire::CancelFrame> cancels;

  // Whether a cancel names `task_key`; sets `force` if one asked for it to be killed.
  bool Cancels(uint64_t task_key, bool& force) const;
};

// The worker's heartbeats, if the gateway asked for them (wire::HeartbeatFrame): sent while the
// worker listens, at most once per interval, and quiet (with the gateway told at once) while it
// may not listen for a while.
class Heartbeat {
 public:
  // The gateway asked for one at least every `interval`.
  void Start(absl::Duration interval) { interval_ = interval; }
  // Sends a heartbeat if they were asked for and one is due (a quiet one while quiet).
  absl::Status MaybeSend(MPI_Comm gateway);
  // The worker may not listen for a while: says so now, and heartbeats are quiet until Loud().
  absl::Status Quiet(MPI_Comm gateway);
  // The worker listens again: the next MaybeSend() sends a heartbeat that is not quiet.
  void Loud();

 private:
  absl::Status Send(MPI_Comm gateway);

  absl::Duration interval_ = absl::InfiniteDuration();
  absl::Time next_ = absl::InfinitePast();
  bool quiet_ = false;
};

class GatewayLink {
 public:
  // `gateway` reaches the gateway at kGatewayRank; tasks heard go into `backlog`, which must
  // outlive the link.
  GatewayLink(MPI_Comm gateway, TaskBacklog& backlog) : gateway_(gateway), backlog_(backlog) {}
  GatewayLink(const GatewayLink&) = delete;
  GatewayLink& operator=(const GatewayLink&) = delete;

  // Opens the doorbell for the hello to name; without one the worker polls with its backoff
  // alone: slower to wake, never wrong. Null if none could be opened.
  const wire::Doorbell* OpenDoorbell();

  // Takes every frame the gateway has sent since the last call: tasks join the backlog, a cancel
  // of a task waiting there drops it (answered CANCELLED: it never started), and other cancels
  // are reported. Stops at a shutdown, leaving anything after it unread. Sends a heartbeat if one
  // is due: this is where the worker listens.
  absl::StatusOr<Heard> Hear();

  // Sends a frame, after the batched results still unsent.
  absl::Status Send(wire::Tag tag, const google::protobuf::MessageLite& frame);
  absl::Status Answer(const wire::ResultFrame& result);
  // Sends the running task `task_key`'s latest progress report, if it made one since the last.
  absl::Status ForwardProgress(uint64_t task_key, TaskSignals& signals);

  // A task runner's serialized result, batched with those it wrote in the same burst: sent now
  // unless `more_at_hand` (the runner's next frame is already read) and the batch has room.
  absl::Status AddRunnerResult(std::string result, bool more_at_hand);
  // Sends the batched results.
  absl::Status FlushResults();

  // Answers the gateway's shutdown, after the batched results.
  absl::Status SayGoodbye();

  // Sends a heartbeat if one is due, while the worker is busy but not listening (its task runner
  // starting): a worker on another host is known to be alive only by them.
  absl::Status Beat() { return heartbeat_.MaybeSend(gateway_); }

  // Around a spell in which the worker can say nothing at all (a gang call).
  absl::Status Quiet() { return heartbeat_.Quiet(gateway_); }
  void Loud() { heartbeat_.Loud(); }

  // Idle: waits `delay` for a ring (sleeps, without a doorbell); true if the doorbell rang. The
  // first ring shows that the gateway rings after every frame (rings()). The result that follows
  // a ring that woke the worker rings the gateway back (see RingBackIfAsleep()).
  bool WaitIdle(absl::Duration delay);
  // While a task runner works: true if a ring waits, which is taken; its frame is then unheard
  // until a Hear() hears something.
  bool TakeRing();
  // The doorbell's descriptor, to wait on with the runner's socket; -1 unless the gateway rings.
  int ring_fd() const { return gateway_rings_ ? doorbell_->fd() : -1; }
  // The gateway has rung: it rings after every frame it sends this worker.
  bool rings() const { return gateway_rings_; }
  // A ring was taken and the frame it announced not heard yet: it may still be on its way.
  bool ring_unheard() const { return ring_unheard_; }

  // Once the gateway said shut down: whether to disconnect from it before finalising MPI. False
  // if its communicator with this worker lost a process (ShutdownFrame.skip_disconnect).
  bool disconnect() const { return disconnect_; }

 private:
  // After results went out with nothing left in the backlog: rings the gateway back if it is
  // likely to sleep between polls by now, rather than poll hot (wire::PollBackoff): if a ring
  // woke this worker from its idle wait since it last rang back (the wake-up took longer than
  // the gateway's hot polls), or it has heard nothing from the gateway for kRingBackAfter.
  void RingBackIfAsleep();

  const MPI_Comm gateway_;
  TaskBacklog& backlog_;
  Heartbeat heartbeat_;
  ResultBatch results_;
  std::optional<wire::Doorbell> doorbell_;
  bool gateway_rings_ = false;
  bool ring_unheard_ = false;
  // A ring woke the worker from its idle wait, and the gateway has not been rung back since.
  bool woken_by_ring_ = false;
  // When Hear() last heard a frame.
  absl::Time last_heard_ = absl::InfinitePast();
  bool disconnect_ = true;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_GATEWAY_LINK_H_
