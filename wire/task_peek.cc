#include "wire/task_peek.h"

#include <climits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "wire/frames.pb.h"

namespace mpigate::wire {

absl::StatusOr<TaskHeader> PeekTask(absl::string_view bytes) {
  using ::google::protobuf::internal::WireFormatLite;
  const auto malformed = [&bytes] {
    return absl::InternalError(absl::StrCat("malformed TaskFrame of ", bytes.size(), " bytes"));
  };
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return malformed();
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  TaskHeader header;
  while (const uint32_t tag = input.ReadTag()) {
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    const WireFormatLite::WireType type = WireFormatLite::GetTagWireType(tag);
    if (field == TaskFrame::kTaskKeyFieldNumber && type == WireFormatLite::WIRETYPE_VARINT) {
      if (!input.ReadVarint64(&header.task_key)) return malformed();
      continue;
    }
    if (field == TaskFrame::kRunTimeoutMsFieldNumber && type == WireFormatLite::WIRETYPE_VARINT) {
      if (!input.ReadVarint64(&header.run_timeout_ms)) return malformed();
      continue;
    }
    if (field == TaskFrame::kGangFieldNumber) {
      // Packed (length-delimited) or not, any occurrence with members makes a gang. A packed
      // field of no bytes holds none.
      if (type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        uint32_t length = 0;
        if (!input.ReadVarint32(&length) || !input.Skip(static_cast<int>(length))) {
          return malformed();
        }
        header.gang = header.gang || length > 0;
        continue;
      }
      header.gang = true;
    }
    if (!WireFormatLite::SkipField(&input, tag)) return malformed();
  }
  if (!input.ConsumedEntireMessage() || input.CurrentPosition() != static_cast<int>(bytes.size())) {
    return malformed();
  }
  return header;
}

absl::StatusOr<uint64_t> PeekResultKey(absl::string_view bytes) {
  using ::google::protobuf::internal::WireFormatLite;
  const auto malformed = [&bytes] {
    return absl::InternalError(absl::StrCat("malformed ResultFrame of ", bytes.size(), " bytes"));
  };
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return malformed();
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  uint64_t key = 0;
  while (const uint32_t tag = input.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == ResultFrame::kTaskKeyFieldNumber &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_VARINT) {
      if (!input.ReadVarint64(&key)) return malformed();
      continue;
    }
    if (!WireFormatLite::SkipField(&input, tag)) return malformed();
  }
  if (!input.ConsumedEntireMessage()) return malformed();
  return key;
}

}  // namespace mpigate::wire
