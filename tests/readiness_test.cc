// Readiness: the ready line, the health states and the endpoint file, in either order of the
// pool's boot and the service's start, with a fake health service.
#include "server/readiness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "common/endpoint.h"
#include "mpigate/v1/gateway.grpc.pb.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Records each name's serving state ("" for the whole server); after Shutdown() ignores changes,
// as gRPC's default health service does.
class FakeHealth final : public grpc::HealthCheckServiceInterface {
 public:
  void SetServingStatus(const std::string& name, bool serving) override {
    if (!shut_down) states[name] = serving;
  }
  void SetServingStatus(bool serving) override { SetServingStatus("", serving); }
  void Shutdown() override {
    for (auto& [name, serving] : states) serving = false;
    shut_down = true;
  }

  std::map<std::string, bool> states;
  bool shut_down = false;
};

const std::string kGateway = v1::Gateway::service_full_name();

class ReadinessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = std::tmpfile();
    ASSERT_NE(out_, nullptr);
    char dir[] = "/tmp/readiness_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    endpoint_file_ = dir_ + "/endpoint";
  }
  void TearDown() override {
    std::remove(endpoint_file_.c_str());
    rmdir(dir_.c_str());
    std::fclose(out_);
  }

  // What the Readiness printed so far.
  std::string Printed() {
    std::fflush(out_);
    std::rewind(out_);
    std::string text;
    char buffer[512];
    while (std::fgets(buffer, sizeof(buffer), out_) != nullptr) text += buffer;
    return text;
  }

  bool EndpointFileExists() { return access(endpoint_file_.c_str(), F_OK) == 0; }

  static v1::PoolStateChange State(v1::PoolState state, const std::string& reason = "") {
    v1::PoolStateChange change;
    change.set_state(state);
    change.set_reason(reason);
    return change;
  }

  FILE* out_ = nullptr;
  std::string dir_;
  std::string endpoint_file_;
  FakeHealth health_;
};

TEST_F(ReadinessTest, ReadyOnceListeningAfterBoot) {
  Readiness readiness(absl::Now(), 3, out_);
  readiness.HealthStarted(&health_);
  EXPECT_FALSE(health_.states[""]);
  EXPECT_FALSE(health_.states[kGateway]);
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
  readiness.Booted(State(v1::POOL_STATE_READY));
  EXPECT_EQ(Printed(), "");
  EXPECT_FALSE(health_.states[""]);
  ASSERT_TRUE(
      readiness
          .Listening({.target = "unix:/x/s.sock", .token = "secret-token-1234"}, endpoint_file_)
          .ok());
  absl::StatusOr<Endpoint> written = ReadEndpointFile(endpoint_file_);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->target, "unix:/x/s.sock");
  EXPECT_EQ(written->token, "secret-token-1234");
  const std::string printed = Printed();
  EXPECT_THAT(printed, HasSubstr("mpigate-server: listening on unix:/x/s.sock, endpoint file " +
                                 endpoint_file_ + ", starting 3 workers, pid "));
  EXPECT_THAT(printed, HasSubstr("mpigate-server: ready in "));
  EXPECT_THAT(printed, HasSubstr(": 3 workers, listening on unix:/x/s.sock"));
  EXPECT_TRUE(health_.states[""]);
  EXPECT_TRUE(health_.states[kGateway]);
  EXPECT_TRUE(health_.states[kFullSizeHealthService]);
}

TEST_F(ReadinessTest, ReadyOnceBootedAfterListening) {
  Readiness readiness(absl::Now(), 2, out_);
  readiness.HealthStarted(&health_);
  ASSERT_TRUE(readiness.Listening({.target = "h:1"}, endpoint_file_).ok());
  EXPECT_THAT(Printed(), Not(HasSubstr("ready in")));
  EXPECT_FALSE(health_.states[""]);
  // Lost workers before it was ready: the full-size name follows, once ready.
  readiness.Degraded("worker 1 lost");
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
  readiness.Booted(State(v1::POOL_STATE_READY));
  EXPECT_THAT(Printed(), HasSubstr("ready in"));
  EXPECT_TRUE(health_.states[""]);
  EXPECT_TRUE(health_.states[kGateway]);
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
  readiness.Degraded("");
  EXPECT_TRUE(health_.states[kFullSizeHealthService]);
  readiness.Degraded("worker 0 lost");
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
  EXPECT_TRUE(health_.states[""]);
}

TEST_F(ReadinessTest, BrokenPoolIsReadyButNotServing) {
  Readiness readiness(absl::Now(), 2, out_);
  readiness.HealthStarted(&health_);
  readiness.Booted(State(v1::POOL_STATE_BROKEN, "the initializer failed"));
  ASSERT_TRUE(readiness.Listening({.target = "h:1"}, endpoint_file_).ok());
  EXPECT_THAT(Printed(), HasSubstr(": 2 workers (pool broken: the initializer failed), listening"));
  EXPECT_FALSE(health_.states[""]);
  EXPECT_FALSE(health_.states[kGateway]);
  readiness.Degraded("");
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
}

TEST_F(ReadinessTest, DrainingStopsServingAndRemovesTheEndpointFile) {
  Readiness readiness(absl::Now(), 2, out_);
  readiness.HealthStarted(&health_);
  readiness.Booted(State(v1::POOL_STATE_READY));
  ASSERT_TRUE(readiness.Listening({.target = "h:1"}, endpoint_file_).ok());
  ASSERT_TRUE(EndpointFileExists());
  readiness.Draining();
  EXPECT_FALSE(EndpointFileExists());
  EXPECT_TRUE(health_.shut_down);
  EXPECT_FALSE(health_.states[""]);
  readiness.Degraded("");
  EXPECT_FALSE(health_.states[kFullSizeHealthService]);
}

TEST_F(ReadinessTest, AnEndpointFileThatCannotBeWrittenFails) {
  Readiness readiness(absl::Now(), 2, out_);
  readiness.HealthStarted(&health_);
  readiness.Booted(State(v1::POOL_STATE_READY));
  EXPECT_FALSE(readiness.Listening({.target = "h:1"}, "/proc/no/such/dir/endpoint").ok());
  EXPECT_EQ(Printed(), "");
  EXPECT_FALSE(health_.states[""]);
}

}  // namespace
}  // namespace mpigate::server
