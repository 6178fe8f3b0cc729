// Tests of what `mpigate top` draws (cli/top_view.h): the frame's figures, its order, its fit to
// the terminal, and clients' strings made harmless to a terminal.
#include "cli/top_view.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
// Sets the window title and makes text red, if it reached a terminal as it is.
constexpr char kHostile[] =
    "evil\x1b]0;pwned\x07\x1b[31m\xc2\x9b"
    "2J";

v1::PoolStatus KnownStatus(int workers, int sessions) {
  v1::PoolStatus status;
  status.set_workers(static_cast<uint32_t>(workers));
  status.set_state(v1::POOL_STATE_READY);
  status.set_tasks_succeeded(20);
  status.set_tasks_failed(3);
  status.set_uptime_ms(65'000);
  status.set_recent_tasks_per_second(12.5);
  for (int i = 0; i < workers; ++i) {
    v1::WorkerStatus& worker = *status.add_worker_list();
    worker.set_worker(static_cast<uint32_t>(i));
    worker.set_host("node1");
    worker.set_pid(1000 + i);
    worker.set_runner_pid(2000 + i);
    worker.set_tasks_done(10);
  }
  v1::WorkerStatus& busy = *status.mutable_worker_list(workers - 1);
  busy.set_busy(true);
  busy.set_function("sleep");
  busy.set_session_id(9);
  busy.set_client_name(kHostile);
  busy.set_running_ms(3'000);
  busy.set_backlog(2);
  for (int i = 0; i < sessions; ++i) {
    v1::SessionStatus& session = *status.add_session_list();
    session.set_session_id(static_cast<uint64_t>(i + 1));
    session.set_client_name(i == 0 ? kHostile : absl::StrCat("client", i));
    session.set_running_tasks(i == sessions - 1 ? 1 : 0);
    session.set_tasks_succeeded(static_cast<uint64_t>(i));
  }
  v1::FailureRecord& failure = *status.add_recent_failures();
  failure.set_unix_ms(absl::ToUnixMillis(kNow - absl::Seconds(12)));
  failure.set_session_id(1);
  failure.set_client_name("alpha");
  failure.set_task_id(5);
  failure.set_function("fail");
  failure.set_worker(-1);
  failure.set_code("UNKNOWN");
  failure.set_message(absl::StrCat("line one\nline two ", kHostile));
  for (const uint32_t count : {0, 4, 8}) status.add_tasks_ended_per_second(count);
  return status;
}

TEST(TopViewTest, TheFrameHasTheFiguresBusiestFirst) {
  const std::vector<std::string> lines =
      TopFrame(KnownStatus(3, 3), "unix:/s", {.width = 200}, kNow);
  EXPECT_THAT(lines[0], StartsWith("mpigate top  unix:/s  READY  up 1m05s"));
  EXPECT_THAT(lines[1], StartsWith("workers 3: 1 busy, 2 idle, 0 down"));
  EXPECT_THAT(lines[2], StartsWith("tasks/s 12  last 3 s ▁▅█ peak 8/s"));
  EXPECT_THAT(lines[3], StartsWith("ended: 20 succeeded, 3 failed, 0 cancelled"));
  const auto heading = std::find_if(lines.begin(), lines.end(), [](const std::string& line) {
    return absl::StartsWith(line, "WORKER");
  });
  ASSERT_NE(heading, lines.end());
  // The busy worker, 2, first; then the idle ones by index.
  EXPECT_THAT(*(heading + 1), StartsWith("     2 node1"));
  EXPECT_THAT(*(heading + 1), HasSubstr("busy  sleep"));
  EXPECT_THAT(*(heading + 1), HasSubstr("3.00 s"));
  EXPECT_THAT(*(heading + 1), HasSubstr("#9 +2"));
  EXPECT_THAT(*(heading + 2), StartsWith("     0 node1"));
  // The session with a task running first.
  const auto sessions = std::find_if(lines.begin(), lines.end(), [](const std::string& line) {
    return absl::StartsWith(line, "SESSION");
  });
  ASSERT_NE(sessions, lines.end());
  EXPECT_THAT(*(sessions + 1), StartsWith("      3"));
  EXPECT_THAT(lines,
              Contains(HasSubstr("   12s ago  alpha #1 task 5 fail: UNKNOWN: line one line two")));
}

TEST(TopViewTest, ControlCharactersNeverReachTheTerminal) {
  for (const std::string& line : TopFrame(KnownStatus(2, 2), "unix:/s", {}, kNow)) {
    for (const char c : line) {
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << line;
    }
    EXPECT_FALSE(absl::StrContains(line, "\xc2\x9b")) << line;
  }
  EXPECT_EQ(Printable(kHostile), "evil?]0;pwned??[31m?2J");
  EXPECT_EQ(Printable("a\tb\nc"), "a b c");
  EXPECT_EQ(Printable("naïve €"), "naïve €");
}

TEST(TopViewTest, TheFrameFitsTheTerminalAndSaysWhatItLeftOut) {
  const TopSize size{.width = 60, .height = 20};
  const std::vector<std::string> lines = TopFrame(KnownStatus(40, 30), "unix:/s", size, kNow);
  EXPECT_EQ(lines.size(), 20u);
  for (const std::string& line : lines) {
    size_t characters = 0;
    for (const char c : line) characters += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    EXPECT_LE(characters, 60u) << line;
  }
  // Every section is there, each with what did not fit counted.
  EXPECT_THAT(lines, Contains("RECENT FAILURES"));
  EXPECT_THAT(lines, Contains(StartsWith("  ... 38 more")));
  EXPECT_THAT(lines, Contains(StartsWith("  ... 28 more")));
  // Unlimited (--once): every row.
  EXPECT_EQ(TopFrame(KnownStatus(40, 30), "unix:/s", {}, kNow).size(), 4u + 8 + 40 + 30 + 1 + 1);
}

}  // namespace
}  // namespace mpigate::cli
