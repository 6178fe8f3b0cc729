// wire::Tag: which frame (wire/frames.proto) a message carries, whatever carries it: the MPI tag
// of a message between the gateway and a worker (wire/mpi_frames.h), or the tag byte of a frame
// on the stream between a worker and its task runner (wire/stream_frames.h).
//
// No MPI here, so that the task runner, which never initialises MPI, shares the numbering.
#ifndef MPIGATE_WIRE_TAG_H_
#define MPIGATE_WIRE_TAG_H_

namespace mpigate::wire {

enum class Tag : int {
  kHello = 1,      // worker -> gateway, runner -> worker: HelloFrame
  kTask = 2,       // gateway -> worker -> runner: TaskFrame
  kResult = 3,     // runner -> worker -> gateway: ResultFrame
  kShutdown = 4,   // gateway -> worker: ShutdownFrame
  kCancel = 5,     // gateway -> worker -> runner: CancelFrame
  kProgress = 6,   // runner -> worker -> gateway: ProgressFrame
  kTasks = 7,      // gateway -> worker: FrameBatch of TaskFrames
  kResults = 8,    // worker -> gateway: FrameBatch of ResultFrames
  kHeartbeat = 9,  // gateway -> worker, worker -> gateway: HeartbeatFrame
};

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_TAG_H_
