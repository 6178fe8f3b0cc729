// Doorbell: lets an idle worker sleep until the gateway has sent it something, instead of polling
// MPI (Open MPI's blocking receive spins; PollBackoff's sleeps cost latency).
//
// A worker on the gateway's host opens a doorbell, a Unix datagram socket, and names it in its
// hello; the gateway rings it after each frame it sends that worker, and the worker, past its hot
// polls, waits on it (with its task runner's socket, see fd()). A ring only wakes: the frame still
// comes through MPI, so a lost or early ring costs a poll, never a message. A gateway that cannot
// reach the doorbell (another host or network namespace) never rings, and the worker keeps
// polling.
//
// Only the worker's user may ring: the socket sits in a private directory (mkdtemp, mode 0700), and
// rings from another user (SO_PASSCRED) are dropped.
//
// Not thread-safe: each side belongs to the one thread that owns MPI in its process.
#ifndef MPIGATE_WIRE_DOORBELL_H_
#define MPIGATE_WIRE_DOORBELL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mpigate::wire {

// The worker's side.
class Doorbell {
 public:
  // Makes a private directory and binds the doorbell in it. First removes the doorbell
  // directories of this user that nobody listens on any more (of workers that were killed).
  static absl::StatusOr<Doorbell> Open();

  Doorbell(Doorbell&& other) noexcept;
  Doorbell& operator=(Doorbell&& other) noexcept;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  // Closes the socket and removes its file and directory.
  ~Doorbell();

  // What the gateway rings (HelloFrame.doorbell): the socket's path.
  const std::string& address() const { return address_; }

  // Waits until the doorbell rings or `timeout` passes, and takes every ring waiting; true if it
  // rang. Datagrams of other users are taken and ignored.
  bool Wait(absl::Duration timeout);

  // Readable while a ring waits to be taken, for a poll(2) that waits on other things too.
  int fd() const { return fd_; }

 private:
  Doorbell(int fd, std::string directory, std::string address)
      : fd_(fd), directory_(std::move(directory)), address_(std::move(address)) {}
  void Close();

  int fd_ = -1;
  // Empty once moved from.
  std::string directory_;
  std::string address_;
};

// Where the worker of the doorbell at `address` (HelloFrame.doorbell) leaves a note of how its
// process ended, if it ends outside its loop (worker/death_note.h): a file in the doorbell's
// private directory, for a gateway on its host to read once the process is gone. Removed with
// the directory.
std::string DeathNotePath(absl::string_view address);

// The gateway's side: one socket that rings any worker's doorbell.
class DoorbellRinger {
 public:
  static absl::StatusOr<DoorbellRinger> Open();

  DoorbellRinger(DoorbellRinger&& other) noexcept;
  DoorbellRinger& operator=(DoorbellRinger&& other) noexcept;
  DoorbellRinger(const DoorbellRinger&) = delete;
  DoorbellRinger& operator=(const DoorbellRinger&) = delete;
  ~DoorbellRinger();

  // Rings the doorbell at `address` (a socket path). A full doorbell counts as rung: it has rings
  // to take already. An error if there is no such doorbell here (the worker runs elsewhere) or it
  // is not this user's.
  absl::Status Ring(absl::string_view address);

 private:
  explicit DoorbellRinger(int fd) : fd_(fd) {}

  int fd_ = -1;
};

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_DOORBELL_H_
