// TaskPump: the task traffic of the gateway's MPI thread while the pool serves: it sends the
// scheduler's assignments and interrupts to the processes that serve their workers, and takes
// their results and progress reports back to the scheduler.
//
// Batches: the small task frames one worker gets in one dispatch round go in one MPI message
// (Tag::kTasks), in the order the scheduler handed them out, and each worker sent anything is
// rung once, after all of them; results come back several to a message (Tag::kResults), and the
// results of one round of polls go to Scheduler::Complete together, so that each session's stream
// writes them at once. Its buffers live as long as it does, so a round allocates nothing new.
//
// Shared memory: a task whose input is in a shared memory object goes as it is to a process that
// sees the gateway's shared memory; for any other, the pump reads the object into the frame, and
// asks for the result in the frame.
//
// Thread-safety: makes MPI calls: only the gateway's MPI thread may use it. The table, sends,
// bell and scheduler must outlive it.
#ifndef MPIGATE_SERVER_TASK_PUMP_H_
#define MPIGATE_SERVER_TASK_PUMP_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/gateway_bell.h"
#include "server/process_table.h"
#include "server/scheduler.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"

namespace mpigate::server {

class TaskPump {
 public:
  // `bell` may be null: then no worker is rung, and each finds its frames by polling.
  TaskPump(ProcessTable& table, wire::PendingSends& sends, GatewayBell* bell, Scheduler& scheduler);
  TaskPump(const TaskPump&) = delete;
  TaskPump& operator=(const TaskPump&) = delete;

  // Sends a round's work. An assignment whose worker is out of service, or that cannot go (an
  // unreadable shared input, a frame too large), is failed to the scheduler as its worker would
  // have answered. Returns whether any task frame went out; an error only if MPI failed.
  absl::StatusOr<bool> Send(DispatchWork& work);

  // Takes a message of tag kProgress, kResult or kResults from `process`: its results count as
  // answered, and those of a process that serves a worker go to the scheduler (by HandOver() at
  // the latest). INTERNAL for any other tag or a frame that does not parse.
  absl::Status Take(Process& process, const wire::ReceivedMessage& message);

  // Hands the results taken since the last hand-over to the scheduler.
  void HandOver();

 private:
  // Sends a worker's batched frames: one as it is, several in one message.
  absl::Status SendBatch(int worker);
  // Fails a frame that cannot go to its worker, as the worker would have answered it.
  void Fail(const Assignment& assignment, const absl::Status& why);
  // Before `frame` goes to `process`: carries its shared memory input in the frame, and asks for
  // the result there, if the process does not share the gateway's shared memory.
  static absl::Status FitSharedMemory(const Process& process, wire::TaskFrame& frame);

  ProcessTable& table_;
  wire::PendingSends& sends_;
  GatewayBell* const bell_;
  Scheduler& scheduler_;
  // Each worker's small task frames of one dispatch round.
  std::vector<wire::FrameBatch> batches_;
  // Workers sent a frame this round; each is rung once, after all of them.
  std::vector<bool> sent_to_;
  // The results of one round of polls, handed to the scheduler together.
  std::vector<Scheduler::WorkerResult> received_;
  // Decoded in place, message after message.
  wire::ProgressFrame progress_;
  wire::FrameBatch results_;
  std::vector<const std::string*> frames_;
};

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_TASK_PUMP_H_
