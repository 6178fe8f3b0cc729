#include "wire/stream_frames.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mpigate::wire {
namespace {

constexpr size_t kHeaderBytes = sizeof(uint64_t) + sizeof(uint8_t);

// The most one read() may ask for: Linux transfers at most 0x7ffff000 bytes per call anyway.
constexpr size_t kMaxReadChunk = size_t{1} << 30;

absl::Status WriteAll(int fd, iovec* parts, int count) {
  while (count > 0) {
    msghdr message = {};
    message.msg_iov = parts;
    message.msg_iovlen = static_cast<size_t>(count);
    const ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
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
  char header[kHeaderBytes];
  const uint64_t length = bytes.size();
  const uint8_t tag_byte = static_cast<uint8_t>(tag);
  std::memcpy(header, &length, sizeof(length));
  std::memcpy(header + sizeof(length), &tag_byte, sizeof(tag_byte));
  iovec parts[2] = {{header, kHeaderBytes}, {const_cast<char*>(bytes.data()), bytes.size()}};
  return WriteAll(fd, parts, bytes.empty() ? 1 : 2);
}

absl::Status WriteFrame(int fd, Tag tag, const google::protobuf::MessageLite& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat("cannot serialize ", message.GetTypeName()));
  }
  return WriteFrame(fd, tag, bytes);
}

absl::StatusOr<StreamFrame> ReadFrame(int fd) {
  char header[kHeaderBytes];
  absl::StatusOr<size_t> got = ReadAll(fd, header, kHeaderBytes);
  if (!got.ok()) return got.status();
  if (*got == 0) return absl::OutOfRangeError("the stream has ended");
  if (*got < kHeaderBytes) {
    return absl::DataLossError(absl::StrCat("the stream ended after ", *got, " of the ",
                                            kHeaderBytes, " bytes of a frame header"));
  }
  uint64_t length = 0;
  uint8_t tag_byte = 0;
  std::memcpy(&length, header, sizeof(length));
  std::memcpy(&tag_byte, header + sizeof(length), sizeof(tag_byte));
  StreamFrame frame;
  frame.tag = static_cast<Tag>(tag_byte);
  frame.bytes.resize(length);
  got = ReadAll(fd, frame.bytes.data(), length);
  if (!got.ok()) return got.status();
  if (*got < length) {
    return absl::DataLossError(
        absl::StrCat("the stream ended after ", *got, " of the ", length, " bytes of a frame"));
  }
  return frame;
}

}  // namespace mpigate::wire
