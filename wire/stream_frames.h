// Frames over a byte stream: how a worker and its task runner (worker/runner_process.h) exchange
// the frames of wire/frames.proto over a Unix stream socket.
//
// A frame is a 9-byte header, the payload's length (uint64) and its wire::Tag (uint8), followed by
// the serialized message. The header is in the host's byte order: both ends are processes of one
// host, one the child of the other. A length may exceed 2 GiB; the reader allocates what the header
// announces, so only trusted peers may write to the stream.
//
// Reads and writes block until the whole frame has passed, resuming after EINTR and partial
// transfers. Writes use send(MSG_NOSIGNAL), so a peer that has gone away is an error, not a
// SIGPIPE: the descriptor must be a socket.
//
// Thread-safety: the functions are stateless; a stream needs one reader and one writer at a time
// (callers serialise writes of several threads themselves).
#ifndef MPIGATE_WIRE_STREAM_FRAMES_H_
#define MPIGATE_WIRE_STREAM_FRAMES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"
#include "wire/tag.h"

namespace mpigate::wire {

// A frame read off a stream: its tag and its serialized message.
struct StreamFrame {
  Tag tag = Tag::kHello;
  std::string bytes;
};

// Writes one frame whose message is already serialized (`bytes`), without copying it.
// UNAVAILABLE if the peer has closed its end; INTERNAL for other errors.
absl::Status WriteFrame(int fd, Tag tag, absl::string_view bytes);

// Serializes `message` and writes it as one frame.
absl::Status WriteFrame(int fd, Tag tag, const google::protobuf::MessageLite& message);

// Reads the next frame. OUT_OF_RANGE if the stream ends cleanly between frames (the peer closed
// its end), DATA_LOSS if it ends inside one, INTERNAL for other errors.
absl::StatusOr<StreamFrame> ReadFrame(int fd);

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_STREAM_FRAMES_H_
