// Unit tests of the event log's levels and line format.
#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate {
namespace {

TEST(LogTest, LevelNamesParse) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("INFO"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("loud").status().code(), absl::StatusCode::kInvalidArgument);
}

// Runs `body` with stderr sent to a file, and returns what it wrote.
template <typename Body>
std::string CaptureStderr(Body body) {
  char path[] = "/tmp/log_test-XXXXXX";
  const int file = mkstemp(path);
  const int saved = dup(STDERR_FILENO);
  dup2(file, STDERR_FILENO);
  body();
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string text;
  lseek(file, 0, SEEK_SET);
  char buffer[4096];
  for (ssize_t got; (got = read(file, buffer, sizeof(buffer))) > 0;) {
    text.append(buffer, static_cast<size_t>(got));
  }
  close(file);
  unlink(path);
  return text;
}

TEST(LogTest, LinesBelowTheLevelAreDroppedAndEachLineIsStampedWhole) {
  SetLogProgram("log_test");
  SetLogLevel(LogLevel::kInfo);
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  const std::string text = CaptureStderr([] {
    Log(LogLevel::kDebug, "not shown");
    Log(LogLevel::kInfo, "session ", 3, " opened");
    Log(LogLevel::kError, "worker ", 1, " lost");
  });
  EXPECT_THAT(text, ::testing::MatchesRegex(
                        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z INFO "
                        "log_test: session 3 opened\n"
                        "[0-9-]+T[0-9:.]+Z ERROR log_test: worker 1 lost\n"));
  SetLogLevel(LogLevel::kError);
  EXPECT_EQ(CaptureStderr([] { Log(LogLevel::kWarning, "quiet"); }), "");
  SetLogLevel(LogLevel::kInfo);
}

// 20,000 events in a burst, as from a client hammering the service with refused calls: the first
// `max_lines` of each interval are written, the rest counted, and the count reported once the
// interval has passed, with the next event.
TEST(LogThrottleTest, WritesTheFirstLinesOfEachIntervalAndCountsTheRest) {
  SetLogProgram("log_test");
  SetLogLevel(LogLevel::kInfo);
  absl::Time now = absl::FromUnixSeconds(1000);
  LogThrottle throttle({.level = LogLevel::kWarning,
                        .what = "refused calls",
                        .max_lines = 3,
                        .interval = absl::Seconds(10),
                        .clock = [&now] { return now; }});
  const std::string burst = CaptureStderr([&] {
    for (int i = 0; i < 20000; ++i) throttle.Log("refused call ", i);
  });
  EXPECT_THAT(burst, ::testing::MatchesRegex("([0-9-]+T[0-9:.]+Z WARNING log_test: refused call "
                                             "[0-2]\n){3}"));
  now += absl::Milliseconds(9999);
  EXPECT_EQ(CaptureStderr([&] { throttle.Log("refused call in the same interval"); }), "");
  now += absl::Milliseconds(1);
  const std::string next = CaptureStderr([&] { throttle.Log("refused call ", 20001); });
  EXPECT_THAT(next, ::testing::MatchesRegex(
                        "[0-9-]+T[0-9:.]+Z WARNING log_test: refused calls: 19998 more not logged "
                        "in the last 10s\n"
                        "[0-9-]+T[0-9:.]+Z WARNING log_test: refused call 20001\n"));
  // A new interval began with that event: no summary, nothing was left out of it yet.
  now += absl::Seconds(60);
  EXPECT_THAT(CaptureStderr([&] { throttle.Log("later"); }),
              ::testing::MatchesRegex("[0-9-]+T[0-9:.]+Z WARNING log_test: later\n"));
}

TEST(LogThrottleTest, LinesBelowTheLevelAreNeitherWrittenNorCounted) {
  SetLogLevel(LogLevel::kError);
  absl::Time now = absl::FromUnixSeconds(1000);
  LogThrottle throttle({.what = "refused calls", .max_lines = 1, .clock = [&now] { return now; }});
  EXPECT_EQ(CaptureStderr([&] {
              for (int i = 0; i < 100; ++i) throttle.Log("quiet");
              now += absl::Hours(1);
              throttle.Log("quiet");
            }),
            "");
  SetLogLevel(LogLevel::kInfo);
}

}  // namespace
}  // namespace mpigate
