// Frames over a byte stream: how a worker and its task runner (worker/runner_process.h) exchange
// the frames of wire/frames.proto over a Unix stream socket.
//
// A frame is a 9-byte header, the payload's length (uint64) and its wire::Tag (uint8), in host
// byte order (both ends share a host), followed by the serialized message. The reader allocates
// what a header announces, so only trusted peers may write to the stream.
//
// Reads and writes block until the whole frame has passed. A FrameReader reads ahead, so that a
// burst of small frames costs one read(2). Writes use send(MSG_NOSIGNAL): a peer gone is an
// error, not a SIGPIPE, so the descriptor must be a socket.
//
// Flow control is the peers' business: two peers that both block writing while neither reads
// deadlock. The WriteFrames overload that takes a WaitForRoom never blocks in the kernel, so its
// caller can read while its write waits; and no peer may wait for its own reads in the middle of
// writing a frame.
//
// Thread-safety: the functions are stateless; a stream needs one reader and one writer at a time
// (callers serialise writes of several threads themselves).
#ifndef MPIGATE_WIRE_STREAM_FRAMES_H_
#define MPIGATE_WIRE_STREAM_FRAMES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
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

// Writes several frames of one tag, already serialized, with as few system calls as the kernel
// allows (one for a burst of small frames).
absl::Status WriteFrames(int fd, Tag tag, absl::Span<const absl::string_view> frames);

// Called by a non-blocking write whenever the socket is full: returns once there may be room
// again (e.g. after poll(2) said POLLOUT), or an error that abandons the write.
using WaitForRoom = absl::FunctionRef<absl::Status()>;

// As above, but never blocks in the kernel: sends with MSG_DONTWAIT and, whenever the socket is
// full, calls `wait_for_room`, whose error it returns. An abandoned write may leave part of a
// frame in the stream, which is then of no further use.
absl::Status WriteFrames(int fd, Tag tag, absl::Span<const absl::string_view> frames,
                         WaitForRoom wait_for_room);

// Serializes `message` and writes it as one frame.
absl::Status WriteFrame(int fd, Tag tag, const google::protobuf::MessageLite& message);

// Reads the frames of one stream, reading ahead into a buffer of its own. Not thread-safe: one
// reader per stream, and nothing else may read the descriptor.
class FrameReader {
 public:
  explicit FrameReader(int fd);
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Whether a whole frame is already buffered, so that Next() returns without reading: callers
  // that poll the descriptor first must not wait for it while this holds.
  bool HasFrame() const;

  // The next frame, blocking until it has arrived whole. OUT_OF_RANGE if the stream ends cleanly
  // between frames (the peer closed its end), DATA_LOSS if it ends inside one, INTERNAL for other
  // errors.
  absl::StatusOr<StreamFrame> Next();

 private:
  // Reads once more into the buffer. OUT_OF_RANGE if the stream ended between frames, DATA_LOSS
  // inside one.
  absl::Status Fill();

  const int fd_;
  // Bytes [start_, end_) of buffer_ have been read and not yet handed out.
  std::string buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace mpigate::wire

#endif  // MPIGATE_WIRE_STREAM_FRAMES_H_
