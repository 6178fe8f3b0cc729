// Encode/Decode of wire frames. Never calls MPI: these two functions only serialize.
#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"
#include "wire/mpi_frames.h"

namespace mpigate::wire {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Every byte value, so that any byte the encoder treated specially would show up.
std::string AllBytes(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 131 % 256);
  return bytes;
}

TEST(FramesTest, TaskFrameRoundTripKeepsNulBytes) {
  TaskFrame frame;
  frame.set_task_key(0xfedcba9876543210u);
  frame.set_function("echo");
  const std::string payload("a\0b\0\0c", 6);
  frame.set_payload(payload);
  frame.add_items(std::string("\0", 1));
  frame.add_items("");

  absl::StatusOr<std::string> bytes = Encode(frame);
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  TaskFrame decoded;
  ASSERT_EQ(Decode(*bytes, decoded), absl::OkStatus());
  EXPECT_EQ(decoded.task_key(), 0xfedcba9876543210u);
  EXPECT_EQ(decoded.function(), "echo");
  EXPECT_EQ(decoded.payload(), payload);
  EXPECT_EQ(decoded.payload().size(), 6u);
  EXPECT_THAT(decoded.items(), ElementsAre(std::string("\0", 1), ""));
}

TEST(FramesTest, TaskFrameRoundTripOneMebibytePayload) {
  TaskFrame frame;
  frame.set_task_key(7);
  frame.set_function("spin");
  const std::string payload = AllBytes(size_t{1} << 20);
  frame.set_payload(payload);

  absl::StatusOr<std::string> bytes = Encode(frame);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(bytes->size(), payload.size());

  TaskFrame decoded;
  ASSERT_EQ(Decode(*bytes, decoded), absl::OkStatus());
  EXPECT_EQ(decoded.task_key(), 7u);
  EXPECT_EQ(decoded.function(), "spin");
  EXPECT_TRUE(decoded.payload() == payload) << "payload differs after the round trip";
}

TEST(FramesTest, ResultFrameRoundTripKeepsOneofAndItems) {
  ResultFrame frame;
  frame.set_task_key(3);
  frame.set_run_us(1234);
  ErrorInfo& error = *frame.mutable_error();
  error.set_code(static_cast<int>(absl::StatusCode::kUnknown));
  error.set_message("boom");
  error.set_exception_type("std::runtime_error");

  absl::StatusOr<std::string> bytes = Encode(frame);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ResultFrame decoded;
  ASSERT_EQ(Decode(*bytes, decoded), absl::OkStatus());
  EXPECT_EQ(decoded.task_key(), 3u);
  EXPECT_EQ(decoded.run_us(), 1234u);
  ASSERT_EQ(decoded.outcome_case(), ResultFrame::kError);
  EXPECT_EQ(decoded.error().code(), static_cast<int>(absl::StatusCode::kUnknown));
  EXPECT_EQ(decoded.error().message(), "boom");
  EXPECT_EQ(decoded.error().exception_type(), "std::runtime_error");
}

TEST(FramesTest, EmptyResultStaysSetAfterRoundTrip) {
  // A function that returns "" succeeded; the oneof must not decay to "no outcome", which the
  // scheduler reads as a chunk.
  ResultFrame frame;
  frame.set_task_key(1);
  frame.set_result("");
  absl::StatusOr<std::string> bytes = Encode(frame);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ResultFrame decoded;
  ASSERT_EQ(Decode(*bytes, decoded), absl::OkStatus());
  EXPECT_EQ(decoded.outcome_case(), ResultFrame::kResult);
  EXPECT_EQ(decoded.result(), "");
}

TEST(FramesTest, EmptyFrameRoundTrips) {
  absl::StatusOr<std::string> bytes = Encode(ShutdownFrame());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, "");
  ShutdownFrame decoded;
  EXPECT_EQ(Decode(*bytes, decoded), absl::OkStatus());
}

TEST(FramesTest, DecodeGarbageIsInternal) {
  // An eleven-byte varint tag: longer than any valid varint.
  const std::string overlong_varint(11, '\xff');
  TaskFrame frame;
  const absl::Status status = Decode(overlong_varint, frame);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("mpigate.wire.TaskFrame"));
  EXPECT_THAT(status.message(), HasSubstr("11 bytes"));
}

TEST(FramesTest, DecodeTruncatedFrameIsInternal) {
  TaskFrame frame;
  frame.set_task_key(9);
  frame.set_function("echo");
  frame.set_payload(AllBytes(100));
  absl::StatusOr<std::string> bytes = Encode(frame);
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  // Cut inside the payload: its length prefix promises more bytes than there are.
  const std::string truncated = bytes->substr(0, bytes->size() - 10);
  TaskFrame decoded;
  EXPECT_EQ(Decode(truncated, decoded).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace mpigate::wire
