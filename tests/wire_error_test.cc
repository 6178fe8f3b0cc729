#include "wire/wire_error.h"

#include "absl/status/status.h"
#include "common/grpc_status.h"
#include "gtest/gtest.h"
#include "wire/frames.pb.h"

namespace mpigate::wire {
namespace {

TEST(SetErrorTest, WritesCodeAndMessage) {
  ErrorInfo error;
  SetError(absl::DeadlineExceededError("too slow"), error);
  EXPECT_EQ(error.code(), static_cast<int32_t>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(error.message(), "too slow");
  EXPECT_TRUE(error.exception_type().empty());
}

TEST(SetErrorTest, OverwritesAnEarlierError) {
  ErrorInfo error;
  SetError(absl::AbortedError("first"), error);
  SetError(absl::CancelledError(""), error);
  EXPECT_EQ(error.code(), static_cast<int32_t>(absl::StatusCode::kCancelled));
  EXPECT_EQ(error.message(), "");
}

TEST(CanonicalCodeTest, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++code) {
    ErrorInfo error;
    SetError(absl::Status(static_cast<absl::StatusCode>(code), "x"), error);
    EXPECT_EQ(CanonicalCode(error.code()), static_cast<absl::StatusCode>(code)) << code;
  }
}

TEST(CanonicalCodeTest, NonCanonicalCodesAreUnknown) {
  EXPECT_EQ(CanonicalCode(-1), absl::StatusCode::kUnknown);
  EXPECT_EQ(CanonicalCode(17), absl::StatusCode::kUnknown);
  EXPECT_EQ(CanonicalCode(1 << 30), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace mpigate::wire
