#include "wire/mpi_frames.h"

#include <sys/prctl.h>

#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "wire/poll_backoff.h"

namespace mpigate::wire {

void UsePreciseSleeps() { prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); }

absl::Status MpiError(int code, absl::string_view operation) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return absl::InternalError(absl::StrCat(operation, " failed: ", absl::string_view(text, length)));
}

absl::Status ReturnErrors(MPI_Comm comm) {
  const int rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  return rc == MPI_SUCCESS ? absl::OkStatus() : MpiError(rc, "MPI_Comm_set_errhandler");
}

namespace {

absl::Status CheckFitsOneMessage(size_t size) {
  if (size <= static_cast<size_t>(INT_MAX)) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("frame of ", size, " bytes exceeds the 2 GiB limit of one MPI message"));
}

}  // namespace

absl::StatusOr<std::string> Encode(const google::protobuf::MessageLite& frame) {
  if (absl::Status status = CheckFitsOneMessage(frame.ByteSizeLong()); !status.ok()) {
    return status;
  }
  std::string buffer;
  if (!frame.SerializeToString(&buffer)) {
    return absl::InternalError(absl::StrCat("cannot serialize ", frame.GetTypeName()));
  }
  return buffer;
}

absl::Status Decode(absl::string_view bytes, google::protobuf::MessageLite& frame) {
  if (!frame.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InternalError(
        absl::StrCat("malformed ", frame.GetTypeName(), " of ", bytes.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SendFrame(MPI_Comm comm, int dest, Tag tag,
                       const google::protobuf::MessageLite& frame) {
  absl::StatusOr<std::string> buffer = Encode(frame);
  if (!buffer.ok()) return buffer.status();
  return SendEncoded(comm, dest, tag, *buffer);
}

absl::Status SendEncoded(MPI_Comm comm, int dest, Tag tag, absl::string_view bytes) {
  if (absl::Status status = CheckFitsOneMessage(bytes.size()); !status.ok()) return status;
  const int rc = MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, dest,
                          static_cast<int>(tag), comm);
  return rc == MPI_SUCCESS ? absl::OkStatus() : MpiError(rc, "MPI_Send");
}

absl::StatusOr<std::optional<ReceivedMessage>> TryReceive(MPI_Comm comm, int source) {
  int found = 0;
  MPI_Message message;
  MPI_Status status;
  int rc = MPI_Improbe(source, MPI_ANY_TAG, comm, &found, &message, &status);
  if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Improbe");
  if (!found) return std::nullopt;

  int count = 0;
  rc = MPI_Get_count(&status, MPI_BYTE, &count);
  if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Get_count");
  ReceivedMessage received;
  received.source = status.MPI_SOURCE;
  received.tag = static_cast<Tag>(status.MPI_TAG);
  received.bytes.resize(static_cast<size_t>(count));
  rc = MPI_Mrecv(received.bytes.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Mrecv");
  return received;
}

absl::Status PendingSends::Start(MPI_Comm comm, int dest, Tag tag, std::string buffer) {
  Send& send = sends_.emplace_back();
  send.buffer = std::move(buffer);
  send.comm = comm;
  send.dest = dest;
  const int rc = MPI_Isend(send.buffer.data(), static_cast<int>(send.buffer.size()), MPI_BYTE, dest,
                           static_cast<int>(tag), comm, &send.request);
  if (rc != MPI_SUCCESS) {
    sends_.pop_back();
    return MpiError(rc, "MPI_Isend");
  }
  return absl::OkStatus();
}

absl::Status PendingSends::Progress() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    const int rc = MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Test");
    it = done ? sends_.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

absl::Status PendingSends::WaitAll() {
  for (Send& send : sends_) {
    const int rc = MPI_Wait(&send.request, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Wait");
  }
  sends_.clear();
  return absl::OkStatus();
}

void PendingSends::Abandon(MPI_Comm comm, int dest) {
  for (auto it = sends_.begin(); it != sends_.end();) {
    const auto next = std::next(it);
    if (it->comm == comm && it->dest == dest) abandoned_.splice(abandoned_.end(), sends_, it);
    it = next;
  }
}

}  // namespace mpigate::wire
