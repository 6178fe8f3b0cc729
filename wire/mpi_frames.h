// Sending and receiving wire frames over MPI: the one place that knows how a frame becomes an MPI
// message (its tag, its byte count, its buffer's lifetime) and how MPI errors become absl::Status.
//
// Thread-safety: these functions make MPI calls, so only the thread that owns MPI in its process
// may call them. Communicators must use MPI_ERRORS_RETURN (see ReturnErrors) so that failures
// come back as statuses rather than aborting the job.
#ifndef MPIGATE_WIRE_MPI_FRAMES_H_
#define MPIGATE_WIRE_MPI_FRAMES_H_

#include <mpi.h>

#include <list>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"
#include "wire/tag.h"

namespace mpigate::wire {

// Converts an MPI error code into a status that names the failed operation.
absl::Status MpiError(int code, absl::string_view operation);

// Makes MPI report errors on `comm` as return codes instead of aborting.
absl::Status ReturnErrors(MPI_Comm comm);

// Serializes a frame into a buffer for sending. A frame larger than one MPI message can carry with
// an int count (2 GiB - 1) is RESOURCE_EXHAUSTED; Protobuf caps messages at that size anyway.
absl::StatusOr<std::string> Encode(const google::protobuf::MessageLite& frame);

// Parses `bytes` into `frame`; INTERNAL if they are not a valid frame of that type.
absl::Status Decode(absl::string_view bytes, google::protobuf::MessageLite& frame);

// Sends a frame and blocks until its buffer may be reused.
absl::Status SendFrame(MPI_Comm comm, int dest, Tag tag,
                       const google::protobuf::MessageLite& frame);

// Sends a frame that is already serialized (e.g. a task runner's ResultFrame, forwarded as it
// came) and blocks until `bytes` may be reused. RESOURCE_EXHAUSTED above 2 GiB - 1, as Encode.
absl::Status SendEncoded(MPI_Comm comm, int dest, Tag tag, absl::string_view bytes);

// A message taken off the wire.
struct ReceivedMessage {
  int source = -1;
  Tag tag = Tag::kHello;
  std::string bytes;
};

// Receives the next message from `source` (or MPI_ANY_SOURCE) if one has arrived; nullopt if none
// has. Never blocks waiting for a message.
absl::StatusOr<std::optional<ReceivedMessage>> TryReceive(MPI_Comm comm, int source);

// Non-blocking sends that own their buffers until MPI is done with them, so that the owning thread
// can go on receiving while large frames are in flight.
class PendingSends {
 public:
  PendingSends() = default;
  PendingSends(const PendingSends&) = delete;
  PendingSends& operator=(const PendingSends&) = delete;

  // Starts sending `buffer` (from Encode) to `dest`.
  absl::Status Start(MPI_Comm comm, int dest, Tag tag, std::string buffer);

  // Frees the buffers of sends that have completed. Never blocks.
  absl::Status Progress();

  // Blocks until every send has completed.
  absl::Status WaitAll();

  // Gives up on the sends to `dest` of `comm`, whose process is gone: in Open MPI they would
  // never complete (a send to a dead peer waits on its connection for good). Their buffers are
  // kept, untouched, until this object goes, in case MPI still reads them.
  void Abandon(MPI_Comm comm, int dest);

  bool empty() const { return sends_.empty(); }

 private:
  struct Send {
    std::string buffer;
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Comm comm = MPI_COMM_NULL;
    int dest = -1;
  };
  // A list, so that a request's address stays stable while MPI holds it.
  std::list<Send> sends_;
  std::list<Send> abandoned_;
};

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_MPI_FRAMES_H_
