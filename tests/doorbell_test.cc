// The doorbell that wakes an idle worker (wire/doorbell.h): real sockets, no MPI.
#include "wire/doorbell.h"

#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::wire {
namespace {

using ::testing::HasSubstr;

TEST(DoorbellTest, ItsAddressNamesItsProcess) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  EXPECT_THAT(doorbell->address(), HasSubstr(absl::StrCat(getpid())));
}

TEST(DoorbellTest, AWaitWithoutARingTimesOut) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  EXPECT_FALSE(doorbell->Wait(absl::Milliseconds(1)));
}

TEST(DoorbellTest, ARingEndsTheNextWaitAndIsTakenByIt) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<DoorbellRinger> ringer = DoorbellRinger::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  ASSERT_TRUE(ringer->Ring(doorbell->address()).ok());
  EXPECT_TRUE(doorbell->Wait(absl::Minutes(1)));
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration())) << "the ring was taken";
}

TEST(DoorbellTest, ARingFromAnotherThreadEndsAWait) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<DoorbellRinger> ringer = DoorbellRinger::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  std::thread gateway([&] { EXPECT_TRUE(ringer->Ring(doorbell->address()).ok()); });
  // Bounded by the test's own timeout should the ring never come.
  EXPECT_TRUE(doorbell->Wait(absl::InfiniteDuration()));
  gateway.join();
}

TEST(DoorbellTest, AFullDoorbellCountsAsRungAndOneWaitTakesEveryRing) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<DoorbellRinger> ringer = DoorbellRinger::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  // Far more than a socket buffer holds.
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(ringer->Ring(doorbell->address()).ok()) << i;
  EXPECT_TRUE(doorbell->Wait(absl::ZeroDuration()));
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration()));
}

TEST(DoorbellTest, RingingADoorbellThatIsNotHereFails) {
  absl::StatusOr<DoorbellRinger> ringer = DoorbellRinger::Open();
  ASSERT_TRUE(ringer.ok());
  const absl::Status status = ringer->Ring("mpigate-doorbell-of-nobody");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("mpigate-doorbell-of-nobody"));
}

TEST(DoorbellTest, AClosedDoorbellCannotBeRung) {
  absl::StatusOr<DoorbellRinger> ringer = DoorbellRinger::Open();
  ASSERT_TRUE(ringer.ok());
  std::string address;
  {
    absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
    ASSERT_TRUE(doorbell.ok());
    address = doorbell->address();
  }
  EXPECT_FALSE(ringer->Ring(address).ok());
}

}  // namespace
}  // namespace mpigate::wire
