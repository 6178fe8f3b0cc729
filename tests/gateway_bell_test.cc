// The gateway's doorbell (server/gateway_bell.h): real sockets and the bell's own thread, no MPI.
#include "server/gateway_bell.h"

#include <memory>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "wire/doorbell.h"

namespace mpigate::server {
namespace {

constexpr absl::Duration kPatience = absl::Seconds(60);

TEST(GatewayBellTest, AWorkerItRangRingsItBackAndTheMpiThreadIsWoken) {
  absl::Notification woken;
  absl::StatusOr<std::unique_ptr<GatewayBell>> bell =
      GatewayBell::Open([&woken] { woken.Notify(); });
  absl::StatusOr<wire::Doorbell> worker = wire::Doorbell::Open();
  ASSERT_TRUE(bell.ok() && worker.ok());
  ASSERT_TRUE((*bell)->Ring(worker->address()).ok());
  ASSERT_TRUE(worker->Wait(kPatience));
  EXPECT_FALSE(woken.HasBeenNotified()) << "its own ring woke nobody";
  worker->RingBack();
  EXPECT_TRUE(woken.WaitForNotificationWithTimeout(kPatience));
}

TEST(GatewayBellTest, ClosingItEndsItsThreadWithoutARing) {
  int wakes = 0;
  {
    absl::StatusOr<std::unique_ptr<GatewayBell>> bell = GatewayBell::Open([&wakes] { ++wakes; });
    ASSERT_TRUE(bell.ok());
  }
  EXPECT_EQ(wakes, 0);
}

}  // namespace
}  // namespace mpigate::server
