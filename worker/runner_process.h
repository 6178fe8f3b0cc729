// RunnerProcess: a worker's supervisor of one task runner, the process (mpigate-runner,
// worker/runner_main.cc) that runs the worker's plain, chunk and range tasks so that a function
// that crashes (a signal, abort(), exit(), the OOM killer) takes down only the runner, never the
// MPI worker and with it the whole MPI job.
//
// The runner is started with posix_spawn, which glibc implements with clone(CLONE_VM |
// CLONE_VFORK) and exec: the MPI-initialised worker is never duplicated and no atfork handlers
// run (Open MPI warns against fork() in MPI processes). It gets one end of a Unix stream
// socketpair as fd 3 and no other descriptor of the worker's, default signal dispositions, an
// empty signal mask and a session of its own (worker/clean_spawn.h), so that when the runner is
// killed or dies, whatever its tasks started goes too: what stayed in its process group, and
// what exec started in process groups of their own. Frames cross the socket as wire/stream_frames.h
// says: task and cancel frames to the runner; hello, progress and result frames back.
//
// Bytes are forwarded as they are: a TaskFrame goes to the runner as the worker received it, and
// the runner's ResultFrame comes back serialized, to be sent on to the gateway unchanged.
//
// Neither side blocks writing while the other does: the worker's writes never block in the
// kernel, and while one waits for room it reads the runner's frames ahead (they come out of
// later Awaits, in order), so the runner, whose reader thread keeps reading while its other
// threads write (runner_main.cc), can always finish what it writes, and then take what the
// worker writes. A write stays one system call when the socket has room.
//
// Death is seen as the end of the socket stream, or, should the runner have handed its end to a
// process that outlives it, through a pidfd. The runner is then reaped and its end described:
// "task runner (pid 12) was killed by signal 11 (SIGSEGV, Segmentation fault)", "... exited with
// status 3".
//
// Thread-safety: not thread-safe; owned and called by the worker's MPI thread only. The runner
// asks the kernel to kill it when the thread that spawned it exits (PR_SET_PDEATHSIG), so spawn
// it from a thread that lives as long as the worker.
#ifndef MPIGATE_WORKER_RUNNER_PROCESS_H_
#define MPIGATE_WORKER_RUNNER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "wire/frames.pb.h"
#include "wire/stream_frames.h"

namespace mpigate::worker {

// What a runner said or did, as RunnerProcess::Await saw it.
struct RunnerEvent {
  enum class Kind {
    // Nothing happened before the timeout.
    kNone,
    // The task's result: `result` holds its ResultFrame, serialized.
    kResult,
    // The task's latest progress report.
    kProgress,
    // The runner died (or broke the protocol and was killed): `death` says how.
    kDied,
  };
  Kind kind = Kind::kNone;
  std::string result;
  wire::ProgressFrame progress;
  std::string death;
};

class RunnerProcess {
 public:
  struct Options {
    // The mpigate-runner executable.
    std::string binary;
    // Its arguments (worker/worker_options.h: ToRunnerArgs).
    std::vector<std::string> args;
  };

  // Starts a runner. It loads its functions and runs the initializer, then says hello; see
  // AwaitHello. INTERNAL if the process cannot be started.
  static absl::StatusOr<std::unique_ptr<RunnerProcess>> Spawn(const Options& options);

  // Kills the runner, if it still runs, and reaps it.
  ~RunnerProcess();
  RunnerProcess(const RunnerProcess&) = delete;
  RunnerProcess& operator=(const RunnerProcess&) = delete;

  // Waits up to `timeout` for the runner's hello (nullopt if it has not come by then): its
  // initializer_error says if the initializer failed, its error if the runner could not start.
  // ABORTED, describing its death, if it died first.
  absl::StatusOr<std::optional<wire::HelloFrame>> AwaitHello(absl::Duration timeout);

  // Hands the runner tasks: each of `task_frames` is a serialized TaskFrame; all go in one write
  // when the socket has room, else as room comes, reading the runner's frames ahead meanwhile.
  // If the runner cannot be written to, it is killed; the next Await reports its death (after
  // the frames read ahead).
  void SendTasks(absl::Span<const absl::string_view> task_frames);
  void SendTask(absl::string_view task_frame) { SendTasks({&task_frame, 1}); }

  // Sets the cancellation flag of the runner's task `task_key`, if it still runs it. Writes as
  // SendTasks does.
  void SendCancel(uint64_t task_key);

  // Waits up to `timeout` for the next result or progress report, or the runner's death; and,
  // if `wake_fd` is not -1, returns kNone as soon as it is readable.
  RunnerEvent Await(absl::Duration timeout, int wake_fd = -1);

  // Whether the runner's next frame has already been read ahead, so that Await returns it
  // without a system call.
  bool HasBufferedFrame() const { return !read_ahead_.empty() || reader_.HasFrame(); }

  // Kills the runner (and every process of its session) with SIGKILL and reaps it. Idempotent.
  void Kill();

  // False once the runner has died or been killed.
  bool alive() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  RunnerProcess(pid_t pid, int socket_fd, int pid_fd)
      : pid_(pid), socket_fd_(socket_fd), pid_fd_(pid_fd), reader_(socket_fd) {}

  enum class Received { kFrame, kTimeout, kDied };

  // Waits up to `timeout` for a frame from the runner and, if one comes, leaves it in `frame`;
  // kTimeout early if `wake_fd` (unless -1) becomes readable. After kDied, death() says how the
  // runner ended.
  Received Receive(absl::Duration timeout, int wake_fd, wire::StreamFrame& frame);

  // Writes frames of `tag` to the runner without blocking while it writes too (see the top of
  // this file); kills it if it cannot be written to.
  void Write(wire::Tag tag, absl::Span<const absl::string_view> frames);

  // Called by Write whenever the socket is full: waits until there may be room, reading the
  // runner's frames into read_ahead_ as they come. UNAVAILABLE once the runner has ended (it
  // has been reaped then).
  absl::Status ReadWhileFull();

  // Kills and reaps the runner and records how it ended in death_; `broke` names a breach of the
  // protocol for which the worker killed it.
  void Reap(absl::string_view broke = {});

  // The runner's pid while it runs; -1 once reaped.
  pid_t pid_;
  // The worker's end of the socketpair and the runner's pidfd (-1 where the kernel has none).
  int socket_fd_;
  int pid_fd_;
  // Reads the runner's frames off socket_fd_, a burst at a time.
  wire::FrameReader reader_;
  // Frames read while a write waited for room, handed out by Receive before anything else.
  std::deque<wire::StreamFrame> read_ahead_;
  // How the runner ended, once it has.
  std::string death_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_RUNNER_PROCESS_H_
