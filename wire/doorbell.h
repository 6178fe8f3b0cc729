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
// The gateway rings from a doorbell of its own, so a ring says where it came from: a worker that a
// ring woke from its idle wait, or whose task ran long, rings that doorbell back once it has sent
// its result (RingBack()), since by then the gateway's MPI thread has given up polling hot and
// sleeps (server/gateway_bell.h).
//
// Only the doorbell's user may ring: the socket sits in a private directory (mkdtemp, mode 0700),
// and rings from another user (SO_PASSCRED) are dropped, nor are they rung back.
//
// Thread-safety: Ring() may be called on one thread while another waits in Wait() (the gateway
// rings workers from its MPI thread while a thread of its own waits for their rings back); every
// other call belongs to one thread, the one that owns MPI in the process.
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

  // Rings the doorbell at `address` (a socket path) from this one, which that doorbell's
  // RingBack() then rings. A full doorbell counts as rung: it has rings to take already. An error
  // if there is no such doorbell here (its worker runs elsewhere) or it is not this user's.
  absl::Status Ring(absl::string_view address);

  // Rings the doorbell whose ring a Wait() took last; nothing if none has come from a doorbell.
  void RingBack();

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
  // The doorbell that rang this one last, for RingBack(); empty until one has.
  std::string rung_by_;
};

// Where the worker of the doorbell at `address` (HelloFrame.doorbell) leaves a note of how its
// process ended, if it ends outside its loop (worker/death_note.h): a file in the doorbell's
// private directory, for a gateway on its host to read once the process is gone. Removed with
// the directory.
std::string DeathNotePath(absl::string_view address);

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_DOORBELL_H_
