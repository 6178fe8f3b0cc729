// ServerProcess: a real mpigate-server started as a child process for end-to-end tests.
//
// Start() launches it (directly, as an MPI singleton, or under `mpiexec -n 1`) and blocks until it
// prints its ready line. Built against MPICH (--config=mpich), which cannot spawn, it always starts
// the pool in world mode (`mpiexec.mpich -n workers+1 mpigate-server --world`). Stop() sends
// SIGTERM and waits for it to exit, then reaps every descendant it left (MPI daemon, workers): the
// test process makes itself a child subreaper, so orphaned descendants become its children, and "no
// process left behind" is checked by waiting for them rather than by polling or sleeping.
//
// Thread-safety: one thread drives a ServerProcess.
#ifndef MPIGATE_TESTS_SERVER_PROCESS_H_
#define MPIGATE_TESTS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mpigate/v1/gateway.pb.h"

namespace mpigate::testing {

struct ServerOptions {
  int workers = 2;
  // Extra flags for mpigate-server.
  std::vector<std::string> flags;
  // Start under `mpiexec -n 1` instead of as a singleton.
  bool under_mpiexec = false;
  // World mode: `mpiexec -n workers+1 mpigate-server --world`.
  bool world = false;
  // Return once the pool is up (the ready line); false: once the server listens, while its
  // workers are still starting.
  bool await_ready = true;
};

// How the server and its descendants ended.
struct ServerExit {
  // The server's (or mpiexec's) exit code; -signal if killed by a signal.
  int exit_code = 0;
  // Everything the server wrote to stderr.
  std::string stderr_text;
  // Descendants that were still alive when the server exited and were reaped afterwards.
  int descendants_reaped = 0;
};

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and waits for its ready line (or its listening line, see await_ready).
  // Fails with the server's stderr if it exits first.
  absl::Status Start(const ServerOptions& options);

  // The gRPC target clients dial, e.g. "unix:/tmp/mpigate-test-XXXX/s.sock", or the TCP one a
  // --listen flag asked for: as the endpoint file says.
  const std::string& target() const { return target_; }
  // The token the server requires (on TCP), from its endpoint file; empty on a Unix socket.
  const std::string& token() const { return token_; }
  const std::string& endpoint_file() const { return endpoint_file_; }
  // Where it serves its metrics (--metrics_listen), HOST:PORT, from its endpoint file; empty if
  // it serves none.
  const std::string& metrics_address() const { return metrics_address_; }
  // The bearer token its metrics ask for, from its endpoint file; empty if it serves none.
  const std::string& metrics_token() const { return metrics_token_; }
  // The mpigate-server process (not mpiexec).
  pid_t pid() const { return server_pid_; }
  // The process below which every process of the pool runs (workers, task runners): the server,
  // or in world mode mpiexec, whose ranks the workers are.
  pid_t pool_root() const { return world_ ? pid_ : server_pid_; }
  // The pool's worker processes: the mpigate-worker processes the server spawned, or in world
  // mode its ranks 1..N (mpigate-server processes besides the gateway).
  std::vector<pid_t> WorkerPids() const;
  // The name of a worker's process: "mpigate-worker", or in world mode "mpigate-server".
  std::string worker_process_name() const { return world_ ? "mpigate-server" : "mpigate-worker"; }

  // Sends `signal_number` (SIGTERM by default; 0 sends nothing, for a server that stops by
  // itself), waits for the server to exit, and reaps all its descendants.
  absl::StatusOr<ServerExit> Stop(int signal_number = 15);

 private:
  // The child started: mpigate-server, or mpiexec running it.
  pid_t pid_ = -1;
  bool world_ = false;
  pid_t server_pid_ = -1;
  std::string stderr_file_;
  // The read end of the server's stdout, open until it exits so that its prints never fail.
  int stdout_fd_ = -1;
  std::string dir_;
  std::string target_;
  std::string token_;
  std::string endpoint_file_;
  std::string metrics_address_;
  std::string metrics_token_;
};

// Asks the server at `target` for its pool status (the scheduler's own state) until `done` holds
// for it. DEADLINE_EXCEEDED naming the last status seen when `patience` passes without it, so a
// pool that never gets there fails the test with what it showed instead of outlasting it.
absl::Status AwaitPoolStatus(const std::string& target,
                             const std::function<bool(const v1::PoolStatus&)>& done,
                             absl::Duration patience = absl::Minutes(2));

// Waits until the server at `target` reports `busy` workers running tasks (AwaitPoolStatus).
absl::Status AwaitBusyWorkers(const std::string& target, uint32_t busy,
                              absl::Duration patience = absl::Minutes(2));

// Path of a binary built by Bazel, from the test's runfiles, e.g. "server/mpigate-server".
std::string RunfilePath(const std::string& relative);

// How a command run by RunCommand ended.
struct CommandResult {
  // Its exit status (0 to 255).
  int exit_code = 0;
  // Everything it wrote to stdout and stderr, interleaved as written.
  std::string output;
};

// Runs `command` with `/bin/sh -c`, its stdout and stderr on one pipe, and waits for the shell to
// exit. An error if the shell cannot be started or does not exit normally (is killed by a signal);
// the message then carries what was printed. A command the shell runs and a signal kills is, as
// the shell reports it, an exit code of 128 + the signal.
absl::StatusOr<CommandResult> RunCommand(const std::string& command);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_SERVER_PROCESS_H_
