// What `mpigate status` prints for a PoolStatus: the table and the JSON.
#include "cli/status_text.h"

#include <google/protobuf/util/json_util.h>

#include <string>

#include "common/pool_figures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::PoolStatus BusyPool() {
  v1::PoolStatus status;
  status.set_state(v1::POOL_STATE_READY);
  status.set_workers(4);
  status.set_busy_workers(3);
  status.set_queued_tasks(12);
  status.set_sessions(2);
  status.set_tasks_succeeded(1000);
  status.set_tasks_failed(7);
  status.set_tasks_cancelled(2);
  status.set_uptime_ms((3600 + 2 * 60 + 3) * 1000 + 400);
  status.set_recent_tasks_per_second(123.45);
  v1::SessionStatus* first = status.add_session_list();
  first->set_session_id(1);
  first->set_client_name("quickstart");
  first->set_queued_tasks(10);
  first->set_running_tasks(2);
  first->set_max_running_tasks(4);
  first->set_unread_result_bytes(3 << 20);
  v1::SessionStatus* second = status.add_session_list();
  second->set_session_id(12);
  second->set_queued_tasks(2);
  second->set_running_tasks(1);
  second->set_detached(true);
  v1::FunctionInfo* echo = status.add_functions();
  echo->set_name("echo");
  echo->set_description("Returns its input unchanged.");
  v1::FunctionInfo* exec = status.add_functions();
  exec->set_name("exec");
  exec->set_request_type("mpigate.v1.ExecRequest");
  exec->set_response_type("mpigate.v1.ExecResponse");
  exec->set_description("Runs a program.");
  v1::FunctionInfo* sum = status.add_functions();
  sum->set_name("mylib.sum");
  sum->set_gang(true);
  return status;
}

TEST(FormatPoolStatusTest, ShowsEveryFigureInRowsThatLineUp) {
  EXPECT_EQ(FormatPoolStatus(BusyPool(), "unix:/tmp/s.sock"),
            "endpoint   unix:/tmp/s.sock\n"
            "state      READY\n"
            "workers    4: 3 busy, 1 idle\n"
            "queued     12 tasks\n"
            "tasks/s    123.5 over the last 10 s\n"
            "uptime     1h02m03s\n"
            "ended      1000 succeeded, 7 failed, 2 cancelled\n"
            "\n"
            "sessions   2\n"
            "  ID  CLIENT      QUEUED  RUNNING   UNREAD\n"
            "   1  quickstart      10      2/4  3.0 MiB\n"
            "  12  -                2        1      0 B  detached\n"
            "\n"
            "functions  3\n"
            "  echo       Returns its input unchanged.\n"
            "  exec       mpigate.v1.ExecRequest -> mpigate.v1.ExecResponse  Runs a program.\n"
            "  mylib.sum  [gang]\n");
}

TEST(FormatPoolStatusTest, SaysWhyWhenBrokenOrDraining) {
  v1::PoolStatus status;
  status.set_state(v1::POOL_STATE_BROKEN);
  status.set_state_reason("initializer setenv failed: bad input");
  const std::string text = FormatPoolStatus(status, "node7:50051");
  EXPECT_THAT(text, HasSubstr("state      BROKEN: initializer setenv failed: bad input\n"));
  EXPECT_THAT(text, HasSubstr("sessions   0\n"));
  EXPECT_THAT(text, Not(HasSubstr("CLIENT")));

  // A service from before PoolStatus.state says only whether it drains.
  status.Clear();
  status.set_draining(true);
  EXPECT_THAT(FormatPoolStatus(status, "x"), HasSubstr("state      DRAINING\n"));
  status.set_draining(false);
  EXPECT_THAT(FormatPoolStatus(status, "x"), HasSubstr("state      READY\n"));
}

TEST(FormatPoolStatusTest, SaysWhyWhenDegraded) {
  v1::PoolStatus status;
  status.set_state(v1::POOL_STATE_READY);
  status.set_workers(2);
  status.set_workers_down(1);
  status.set_degraded_reason("1 of 2 workers out of service; replacements are starting");
  EXPECT_THAT(FormatPoolStatus(status, "x"),
              HasSubstr("state      READY, degraded: 1 of 2 workers out of service; "
                        "replacements are starting\n"));
}

TEST(FormatPoolStatusTest, AWorkerDownIsNeitherBusyNorIdle) {
  v1::PoolStatus status;
  status.set_workers(3);
  status.set_busy_workers(1);
  status.set_workers_down(1);
  EXPECT_THAT(FormatPoolStatus(status, "x"), HasSubstr("workers    3: 1 busy, 1 idle, 1 down\n"));
}

TEST(FormatUptimeTest, TwoOrThreeUnits) {
  EXPECT_EQ(FormatUptime(absl::Milliseconds(999)), "0s");
  EXPECT_EQ(FormatUptime(absl::Seconds(42)), "42s");
  EXPECT_EQ(FormatUptime(absl::Seconds(307)), "5m07s");
  EXPECT_EQ(FormatUptime(absl::Seconds(3723)), "1h02m03s");
  EXPECT_EQ(FormatUptime(absl::Hours(76) + absl::Minutes(5)), "3d04h05m");
}

TEST(FormatBytesTest, BinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(20ull << 20), "20.0 MiB");
  EXPECT_EQ(FormatBytes(3ull << 40), "3.0 TiB");
}

TEST(PoolStatusJsonTest, ProtoFieldNamesAndZeros) {
  v1::PoolStatus status = BusyPool();
  status.set_tasks_cancelled(0);
  absl::StatusOr<std::string> json = PoolStatusJson(status, JsonLayout::kIndented);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"busy_workers\": 3"));
  EXPECT_THAT(*json, HasSubstr("\"state\": \"POOL_STATE_READY\""));
  EXPECT_THAT(*json, HasSubstr("\"client_name\": \"quickstart\""));
  EXPECT_THAT(*json, HasSubstr("\"recent_tasks_per_second\": 123.45"));
  // Zeros are printed: a program need not know proto3's defaults.
  EXPECT_THAT(*json, HasSubstr("\"tasks_cancelled\": \"0\""));
  EXPECT_EQ(json->back(), '\n');
  // It parses back to the same message.
  v1::PoolStatus parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), status.SerializeAsString());
}

}  // namespace
}  // namespace mpigate::cli
