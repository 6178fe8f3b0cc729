#include "wire/stream_frames.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mpigate::wire {
namespace {

constexpr size_t kHeaderBytes = sizeof(uint64_t) + sizeof(uint8_t);

// The most one read() may ask for: Linux transfers at most 0x7ffff000 bytes per call anyway.
constexpr size_t kMaxReadChunk = size_t{1} << 30;

// How much a FrameReader reads ahead at once; a frame larger than that is read into its own
// buffer, past what is buffered.
constexpr size_t kReadAhead = 64 << 10;

// The most iovecs one sendmsg takes (IOV_MAX on Linux).
constexpr size_t kMaxParts = 1024;

struct FrameHeader {
  char bytes[kHeaderBytes];
};

FrameHeader HeaderOf(Tag tag, size_t size) {
  FrameHeader header;
  const uint64_t length = size;
  const uint8_t tag_byte = static_cast<uint8_t>(tag);
  std::memcpy(header.bytes, &length, sizeof(length));
  std::memcpy(header.bytes + sizeof(length), &tag_byte, sizeof(tag_byte));
  return header;
}

// The length and tag in a header.
std::pair<uint64_t, Tag> ParseHeader(const char* header) {
  uint64_t length = 0;
  uint8_t tag_byte = 0;
  std::memcpy(&length, header, sizeof(length));
  std::memcpy(&tag_byte, header + sizeof(length), sizeof(tag_byte));
  return {length, static_cast<Tag>(tag_byte)};
}

// Writes `parts` whole; blocking unless `wait_for_room` is given, which is then called whenever
// the socket is full.
absl::Status WriteAll(int fd, iovec* parts, int count, const WaitForRoom* wait_for_room) {
  const int flags = MSG_NOSIGNAL | (wait_for_room != nullptr ? MSG_DONTWAIT : 0);
  while (count > 0) {
    msghdr message = {};
    message.msg_iov = parts;
    message.msg_iovlen = static_cast<size_t>(count);
    const ssize_t sent = sendmsg(fd, &message, flags);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_for_room != nullptr) {
        if (absl::Status room = (*wait_for_room)(); !room.ok()) return room;
        continue;
      }
      if (errno == EPIPE || errno == ECONNRESET) {
        return absl::UnavailableError("the stream's peer has closed it");
      }
      return absl::InternalError(absl::StrCat("sendmsg: ", std::strerror(errno)));
    }
    // Skip what has gone, which may end inside a part.
    size_t left = static_cast<size_t>(sent);
    while (count > 0 && left >= parts->iov_len) {
      left -= parts->iov_len;
      ++parts;
      --count;
    }
    if (count > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + left;
      parts->iov_len -= left;
    }
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes into `data`. Returns how many it read before the stream ended, so
// that the caller can tell an end between frames from one inside a frame.
absl::StatusOr<size_t> ReadAll(int fd, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t got = read(fd, data + done, std::min(size - done, kMaxReadChunk));
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) return done;
      return absl::InternalError(absl::StrCat("read: ", std::strerror(errno)));
    }
    if (got == 0) return done;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

absl::Status WriteFrame(int fd, Tag tag, absl::string_view bytes) {
  FrameHeader header = HeaderOf(tag, bytes.size());
  iovec parts[2] = {{header.bytes, kHeaderBytes}, {const_cast<char*>(bytes.data()), bytes.size()}};
  return WriteAll(fd, parts, bytes.empty() ? 1 : 2, /*wait_for_room=*/nullptr);
}

namespace {

absl::Status WriteFramesWith(int fd, Tag tag, absl::Span<const absl::string_view> frames,
                             const WaitForRoom* wait_for_room) {
  std::vector<FrameHeader> headers;
  headers.reserve(frames.size());
  for (const absl::string_view frame : frames) headers.push_back(HeaderOf(tag, frame.size()));
  std::vector<iovec> parts;
  parts.reserve(2 * frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    parts.push_back({headers[i].bytes, kHeaderBytes});
    if (!frames[i].empty())
      parts.push_back({const_cast<char*>(frames[i].data()), frames[i].size()});
  }
  for (size_t first = 0; first < parts.size(); first += kMaxParts) {
    const size_t count = std::min(kMaxParts, parts.size() - first);
    if (absl::Status status =
            WriteAll(fd, parts.data() + first, static_cast<int>(count), wait_for_room);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFrames(int fd, Tag tag, absl::Span<const absl::string_view> frames) {
  return WriteFramesWith(fd, tag, frames, /*wait_for_room=*/nullptr);
}

absl::Status WriteFrames(int fd, Tag tag, absl::Span<const absl::string_view> frames,
                         WaitForRoom wait_for_room) {
  return WriteFramesWith(fd, tag, frames, &wait_for_room);
}

absl::Status WriteFrame(int fd, Tag tag, const google::protobuf::MessageLite& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat("cannot serialize ", message.GetTypeName()));
  }
  return WriteFrame(fd, tag, bytes);
}

FrameReader::FrameReader(int fd) : fd_(fd), buffer_(2 * kReadAhead, '\0') {}

bool FrameReader::HasFrame() const {
  const size_t buffered = end_ - start_;
  if (buffered < kHeaderBytes) return false;
  return buffered - kHeaderBytes >= ParseHeader(buffer_.data() + start_).first;
}

absl::Status FrameReader::Fill() {
  // What is left moves to the front, so that a frame of up to kReadAhead bytes always fits.
  if (start_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  while (true) {
    const ssize_t got = read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno != ECONNRESET) {
      return absl::InternalError(absl::StrCat("read: ", std::strerror(errno)));
    }
    if (got <= 0) {
      if (end_ == 0) return absl::OutOfRangeError("the stream has ended");
      return absl::DataLossError(
          absl::StrCat("the stream ended inside a frame, after ", end_, " bytes of it"));
    }
    end_ += static_cast<size_t>(got);
    return absl::OkStatus();
  }
}

absl::StatusOr<StreamFrame> FrameReader::Next() {
  while (true) {
    const size_t buffered = end_ - start_;
    if (buffered >= kHeaderBytes) {
      const auto [length, tag] = ParseHeader(buffer_.data() + start_);
      StreamFrame frame;
      frame.tag = tag;
      const char* body = buffer_.data() + start_ + kHeaderBytes;
      const size_t body_buffered = buffered - kHeaderBytes;
      if (length <= body_buffered) {
        frame.bytes.assign(body, length);
        start_ += kHeaderBytes + length;
        if (start_ == end_) start_ = end_ = 0;
        return frame;
      }
      if (length > kReadAhead) {
        // A large frame: what is buffered of it, then the rest straight into its own string.
        frame.bytes.resize(length);
        std::memcpy(frame.bytes.data(), body, body_buffered);
        start_ = end_ = 0;
        absl::StatusOr<size_t> got =
            ReadAll(fd_, frame.bytes.data() + body_buffered, length - body_buffered);
        if (!got.ok()) return got.status();
        if (*got < length - body_buffered) {
          return absl::DataLossError(absl::StrCat("the stream ended after ", body_buffered + *got,
                                                  " of the ", length, " bytes of a frame"));
        }
        return frame;
      }
    }
    if (absl::Status filled = Fill(); !filled.ok()) return filled;
  }
}

}  // namespace mpigate::wire
