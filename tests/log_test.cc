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

}  // namespace
}  // namespace mpigate
