// End to end: the real `mpigate` binary run as a child process against a real mpigate-server with
// 2 MPI workers, its stdout, stderr and exit code checked for every command; and the usage and
// exit codes that need no service.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/gateway.grpc.pb.h"
#include "tests/cli/cli_process.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::AllOf;
using testing::CliOptions;
using testing::CliResult;
using ::testing::ContainsRegex;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::RunMpigate;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

constexpr int kExitSuccess = 0;
constexpr int kExitTaskFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;
constexpr int kExitError = 4;
constexpr int kExitInterrupted = 130;

CliResult RunCli(const std::vector<std::string>& args, const CliOptions& options = {}) {
  absl::StatusOr<CliResult> result = RunMpigate(args, options);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : CliResult();
}

std::string Lines(int count, const std::string& prefix) {
  std::string text;
  for (int i = 0; i < count; ++i) absl::StrAppend(&text, prefix, i, "\n");
  return text;
}

std::vector<std::string> SortedLines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string TestTmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// A file of the test's temporary directory holding `content`; its path.
std::string TempFile(const std::string& name, const std::string& content) {
  const std::string path = absl::StrCat(TestTmpDir(), "/", name);
  FILE* file = std::fopen(path.c_str(), "w");
  EXPECT_NE(file, nullptr) << path;
  if (file != nullptr) {
    std::fwrite(content.data(), 1, content.size(), file);
    std::fclose(file);
  }
  return path;
}

// --- Without a service. ---

TEST(CliUsageTest, HelpOfEveryCommandGoesToStdoutAndExitsZero) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--help"}, "Usage: mpigate [--endpoint=TARGET]"},
      {{"-h"}, "Usage: mpigate [--endpoint=TARGET]"},
      {{"help"}, "Usage: mpigate [--endpoint=TARGET]"},
      {{"serve", "--help"}, "Usage: mpigate serve"},
      {{"submit", "--help"}, "Usage: mpigate submit"},
      {{"submit", "-h"}, "Usage: mpigate submit"},
      {{"map", "--help"}, "Usage: mpigate map"},
      {{"help", "map"}, "Usage: mpigate map"},
      {{"status", "--help"}, "Usage: mpigate status"},
      {{"shutdown", "--help"}, "Usage: mpigate shutdown"},
  };
  for (const auto& [args, usage] : cases) {
    const CliResult run = RunCli(args);
    EXPECT_EQ(run.exit_code, kExitSuccess) << absl::StrJoin(args, " ") << ": " << run.stderr_text;
    EXPECT_THAT(run.stdout_text, AllOf(StartsWith(usage), HasSubstr("Exit codes:")));
    EXPECT_THAT(run.stderr_text, IsEmpty());
  }
  const CliResult top = RunCli({"--help"});
  EXPECT_THAT(top.stdout_text,
              AllOf(HasSubstr("  0  success\n"), HasSubstr("  2  usage error\n"),
                    HasSubstr("  3  service unavailable"), HasSubstr("  4  any other error"),
                    HasSubstr("  130  interrupted by SIGINT or SIGTERM")));
  for (const char* command : {"serve", "submit FUNCTION", "map FUNCTION", "status", "shutdown"}) {
    EXPECT_THAT(top.stdout_text, HasSubstr(absl::StrCat("  ", command)));
  }
}

TEST(CliUsageTest, BadUsageExitsTwoWithAMessageOnStderr) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "mpigate: no command given (see `mpigate --help`)\n"},
      {{"frobnicate"}, "mpigate: no such command 'frobnicate' (see `mpigate --help`)\n"},
      {{"submit"},
       "mpigate: submit: expects FUNCTION [PAYLOAD|-], got 0 arguments (see "
       "`mpigate submit --help`)\n"},
      {{"map", "echo", "--chunksize=0"},
       "mpigate: map: --chunksize must be a whole number of at least 1, got '0' (see `mpigate "
       "map --help`)\n"},
      {{"status", "--bogus"},
       "mpigate: status: no such flag '--bogus' (see `mpigate status --help`)\n"},
      {{"submit", "echo", "--timeout=soon"},
       "mpigate: submit: --timeout must be a duration such as 500ms, 30s or 2m, got 'soon' (see "
       "`mpigate submit --help`)\n"},
  };
  for (const auto& [args, message] : cases) {
    const CliResult run = RunCli(args);
    EXPECT_EQ(run.exit_code, kExitUsage) << absl::StrJoin(args, " ");
    EXPECT_EQ(run.stderr_text, message);
    EXPECT_THAT(run.stdout_text, IsEmpty());
  }
}

TEST(CliUsageTest, NoServiceExitsThree) {
  const std::string nowhere = "--endpoint=unix:/nonexistent/mpigate/s.sock";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {nowhere, "status"},
           {nowhere, "shutdown"},
           {nowhere, "--connect-timeout=300ms", "submit", "echo", "x"},
           {nowhere, "--connect-timeout=300ms", "map", "echo"}}) {
    const CliResult run = RunCli(args, {.stdin_text = "a\nb\n"});
    EXPECT_EQ(run.exit_code, kExitUnavailable) << absl::StrJoin(args, " ");
    EXPECT_THAT(run.stderr_text, AllOf(StartsWith("mpigate: "), HasSubstr("UNAVAILABLE: ")));
    EXPECT_THAT(run.stdout_text, IsEmpty());
  }
  // No endpoint at all: none given, none in the environment, no endpoint file.
  const CliOptions no_endpoint = {
      .env = {{"MPIGATE_ENDPOINT", std::nullopt},
              {"MPIGATE_ENDPOINT_FILE", "/nonexistent/mpigate/endpoint"}}};
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"status"}, {"submit", "echo", "x"}}) {
    const CliResult run = RunCli(args, no_endpoint);
    EXPECT_EQ(run.exit_code, kExitUnavailable) << absl::StrJoin(args, " ");
    EXPECT_THAT(run.stderr_text, HasSubstr("mpigate: cannot reach the service: NOT_FOUND: no "
                                           "mpigate service found"));
  }
}

// --- Against a service. ---

// Workers see CLI_A=alpha and CLI_B=beta (for `getenv`, which fails NOT_FOUND for any other
// name) and hold one task at a time, so that queue lengths in the status are exact.
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess();
    const absl::Status started =
        server_->Start({.workers = 2,
                        .flags = {"--worker-env=CLI_A=alpha", "--worker-env=CLI_B=beta",
                                  "--max-tasks-per-worker=1", "--resume-grace-s=0"}});
    ASSERT_TRUE(started.ok()) << started;
  }

  static void TearDownTestSuite() {
    absl::StatusOr<testing::ServerExit> exit = server_->Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
    delete server_;
    server_ = nullptr;
  }

  // `mpigate --endpoint=<the suite's server> args...`.
  static CliResult Mpigate(std::vector<std::string> args, const CliOptions& options = {}) {
    args.insert(args.begin(), absl::StrCat("--endpoint=", server_->target()));
    return RunCli(args, options);
  }

  // Asks the suite's server for its pool status, one call after another, until `done` holds for
  // it or `timeout` has passed (each call bounded by what is left of it). The last status seen.
  static absl::StatusOr<v1::PoolStatus> AwaitPool(
      const std::function<bool(const v1::PoolStatus&)>& done,
      absl::Duration timeout = absl::Seconds(60)) {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
    const absl::Time deadline = absl::Now() + timeout;
    v1::PoolStatus status;
    do {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      const grpc::Status call = stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status);
      if (!call.ok()) return absl::UnavailableError(call.error_message());
      if (done(status)) return status;
    } while (absl::Now() < deadline);
    return absl::DeadlineExceededError(absl::StrCat(
        "the pool never showed what the test waited for; last: ", status.ShortDebugString()));
  }

  static bool Idle(const v1::PoolStatus& status) {
    return status.busy_workers() == 0 && status.queued_tasks() == 0;
  }

  // The pool has nothing queued or running: what a command that gave up on its tasks leaves.
  static v1::PoolStatus ExpectPoolIdle() {
    const absl::StatusOr<v1::PoolStatus> idle = AwaitPool(&Idle);
    EXPECT_TRUE(idle.ok()) << idle.status();
    return idle.value_or(v1::PoolStatus());
  }

  // For CliOptions::while_running: sends `signal_number` to the command once the pool shows
  // `busy` (its tasks started), or kills it if the pool never does.
  static std::function<void(pid_t)> SignalOnceBusy(
      int signal_number, std::function<bool(const v1::PoolStatus&)> busy) {
    return [signal_number, busy = std::move(busy)](pid_t pid) {
      const absl::StatusOr<v1::PoolStatus> started = AwaitPool(busy);
      EXPECT_TRUE(started.ok()) << started.status();
      kill(pid, started.ok() ? signal_number : SIGKILL);
    };
  }

  static inline testing::ServerProcess* server_ = nullptr;
};

TEST_F(CliTest, SubmitWritesTheResultBytesAsTheyAre) {
  const CliResult run = Mpigate({"submit", "echo", "hello"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, "hello");
  EXPECT_THAT(run.stderr_text, IsEmpty());

  // Global flags may follow the command; a payload after `--` may start with a dash.
  const CliResult dashed =
      RunCli({"submit", "echo", absl::StrCat("--endpoint=", server_->target()), "--", "-n"});
  EXPECT_EQ(dashed.exit_code, kExitSuccess) << dashed.stderr_text;
  EXPECT_EQ(dashed.stdout_text, "-n");
}

TEST_F(CliTest, SubmitReadsThePayloadFromStdin) {
  const std::string payload("binary\0payload\n\xff\n", 18);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"submit", "echo"}, {"submit", "echo", "-"}}) {
    const CliResult run = Mpigate(args, {.stdin_text = payload});
    EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
    EXPECT_EQ(run.stdout_text, payload);
  }
}

TEST_F(CliTest, SubmitOfAFailingTaskExitsOneWithCodeAndMessage) {
  CliResult run = Mpigate({"submit", "fail", "disk on fire"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(run.stderr_text, "mpigate: fail failed: UNKNOWN: disk on fire\n");
  EXPECT_THAT(run.stdout_text, IsEmpty());

  run = Mpigate({"submit", "no_such_function", "x"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_THAT(run.stderr_text, AllOf(StartsWith("mpigate: no_such_function failed: NOT_FOUND: "),
                                     HasSubstr("no_such_function")));
}

TEST_F(CliTest, SubmitTimeoutFailsAndLeavesNoTaskBehind) {
  const CliResult run = Mpigate({"submit", "--timeout=200ms", "sleep", "600000"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(run.stderr_text,
            "mpigate: sleep failed: DEADLINE_EXCEEDED: no result within 200ms; the task was "
            "cancelled\n");
  ExpectPoolIdle();
}

TEST_F(CliTest, MapWritesResultsInInputOrder) {
  const std::string input = Lines(1000, "item-");
  const CliResult run = Mpigate({"map", "echo"}, {.stdin_text = input});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, input);
  // Not a terminal: no bar, only the summary (a map this short prints no progress line).
  EXPECT_THAT(run.stderr_text,
              AllOf(StartsWith("mpigate: map echo: 1000 items, 1000 succeeded, 0 failed in "),
                    EndsWith("/s)\n"), Not(HasSubstr("\r"))));
  EXPECT_EQ(std::count(run.stderr_text.begin(), run.stderr_text.end(), '\n'), 1);
}

TEST_F(CliTest, MapReportsFailedLinesAndGoesOn) {
  const CliResult run = Mpigate({"map", "getenv", "-"}, {.stdin_text = "CLI_A\nNOPE\nCLI_B\n"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  // The failed line leaves an empty one: output line N answers input line N.
  EXPECT_EQ(run.stdout_text, "alpha\n\nbeta\n");
  EXPECT_THAT(run.stderr_text,
              AllOf(StartsWith("mpigate: line 2: NOT_FOUND: "), HasSubstr("NOPE"),
                    HasSubstr("mpigate: map getenv: 3 items, 2 succeeded, 1 failed in ")));
}

TEST_F(CliTest, MapReadsAFileAndSaysWhenItCannot) {
  const std::string path = TempFile("map_input.txt", "one\ntwo\nthree");
  CliResult run = Mpigate({"map", "--quiet", "echo", path});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, "one\ntwo\nthree\n");
  EXPECT_THAT(run.stderr_text, IsEmpty());

  run = Mpigate({"map", "echo", "/nonexistent/items.txt"});
  EXPECT_EQ(run.exit_code, kExitError);
  EXPECT_THAT(run.stderr_text,
              StartsWith("mpigate: map: NOT_FOUND: cannot open /nonexistent/items.txt: "));
}

TEST_F(CliTest, MapOfNoLinesSucceeds) {
  const CliResult run = Mpigate({"map", "echo"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, IsEmpty());
  EXPECT_THAT(run.stderr_text, StartsWith("mpigate: map echo: 0 items, 0 succeeded, 0 failed"));
}

TEST_F(CliTest, MapInChunksKeepsOrderAndGoesOnPastAFailedItem) {
  const std::string input = Lines(100, "chunked-");
  CliResult run = Mpigate({"map", "--chunksize=7", "echo"}, {.stdin_text = input});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, input);

  // Chunks [CLI_A NOPE CLI_B] [CLI_B CLI_A]: the failure in the middle of the first costs only
  // its own line.
  run = Mpigate({"map", "--chunksize=3", "getenv"},
                {.stdin_text = "CLI_A\nNOPE\nCLI_B\nCLI_B\nCLI_A\n"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(run.stdout_text, "alpha\n\nbeta\nbeta\nalpha\n");
  EXPECT_THAT(run.stderr_text,
              AllOf(StartsWith("mpigate: line 2: NOT_FOUND: "), HasSubstr("NOPE"),
                    Not(HasSubstr("line 3")), Not(HasSubstr("not read")),
                    HasSubstr("mpigate: map getenv: 5 items, 4 succeeded, 1 failed in ")));

  // A chunk that fails as a whole (an unknown function: rejected) fails each of its lines.
  run = Mpigate({"map", "--chunksize=2", "no_such_function"}, {.stdin_text = "a\nb\nc\n"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(run.stdout_text, "\n\n\n");
  for (int line = 1; line <= 3; ++line) {
    EXPECT_THAT(run.stderr_text, HasSubstr(absl::StrCat("mpigate: line ", line, ": NOT_FOUND: ")));
  }
}

TEST_F(CliTest, MapUnorderedInChunksReportsEachFailureWithItsLine) {
  // Chunks [CLI_A NOPE] [CLI_B CLI_B] [NOPE CLI_A] [CLI_B]: failures on lines 2 and 5.
  const CliResult run = Mpigate({"map", "--unordered", "--chunksize=2", "getenv"},
                                {.stdin_text = "CLI_A\nNOPE\nCLI_B\nCLI_B\nNOPE\nCLI_A\nCLI_B\n"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed) << run.stderr_text;
  EXPECT_EQ(SortedLines(run.stdout_text),
            (std::vector<std::string>{"alpha", "alpha", "beta", "beta", "beta"}));
  EXPECT_EQ(std::count(run.stdout_text.begin(), run.stdout_text.end(), '\n'), 5);
  // The two failures, in either order, then the summary.
  const std::vector<std::string> diagnostics =
      absl::StrSplit(run.stderr_text, '\n', absl::SkipEmpty());
  ASSERT_EQ(diagnostics.size(), 3u) << run.stderr_text;
  EXPECT_THAT(
      std::vector<std::string>(diagnostics.begin(), diagnostics.begin() + 2),
      UnorderedElementsAre(AllOf(StartsWith("mpigate: line 2: NOT_FOUND: "), HasSubstr("NOPE")),
                           AllOf(StartsWith("mpigate: line 5: NOT_FOUND: "), HasSubstr("NOPE"))));
  EXPECT_THAT(diagnostics[2],
              StartsWith("mpigate: map getenv: 7 items, 5 succeeded, 2 failed in "));
}

TEST_F(CliTest, MapUnorderedWritesEveryResultAndNoLineForFailures) {
  const std::string input = Lines(200, "unordered-");
  CliResult run = Mpigate({"map", "--unordered", "echo"}, {.stdin_text = input});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(SortedLines(run.stdout_text), SortedLines(input));
  EXPECT_EQ(std::count(run.stdout_text.begin(), run.stdout_text.end(), '\n'), 200);

  run = Mpigate({"map", "--unordered", "getenv"}, {.stdin_text = "CLI_A\nNOPE\nCLI_B\n"});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(SortedLines(run.stdout_text), (std::vector<std::string>{"alpha", "beta"}));
  EXPECT_EQ(std::count(run.stdout_text.begin(), run.stdout_text.end(), '\n'), 2);
  EXPECT_THAT(run.stderr_text, HasSubstr("mpigate: line 2: NOT_FOUND: "));
}

TEST_F(CliTest, MapTimeoutFailsTheUnfinishedItemsAndLeavesNoTaskBehind) {
  for (const char* order : {"--unordered", "--quiet"}) {
    const CliResult run = Mpigate({"map", "--timeout=300ms", order, "sleep"},
                                  {.stdin_text = "600000\n600000\n600000\n"});
    EXPECT_EQ(run.exit_code, kExitTaskFailed) << order;
    EXPECT_EQ(run.stdout_text, std::string(order) == "--unordered" ? "" : "\n\n\n");
    for (int line = 1; line <= 3; ++line) {
      EXPECT_THAT(run.stderr_text,
                  HasSubstr(absl::StrCat("mpigate: line ", line,
                                         ": DEADLINE_EXCEEDED: map timed out after 300ms\n")));
    }
    ExpectPoolIdle();
  }
}

TEST_F(CliTest, MapInterruptedCancelsItsTasksAndExits130) {
  struct Case {
    std::vector<std::string> flags;
    int signal_number;
    int items;
    // What the pool shows once the map has started: both workers busy, the rest queued.
    uint32_t queued;
  };
  for (const Case& c : {Case{{"--chunksize=1"}, SIGINT, 5, 3},
                        Case{{"--unordered", "--chunksize=2"}, SIGTERM, 6, 1}}) {
    SCOPED_TRACE(absl::StrCat(absl::StrJoin(c.flags, " "), ", signal ", c.signal_number));
    const v1::PoolStatus before = ExpectPoolIdle();
    std::vector<std::string> args = {"map"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back("sleep");
    std::string input;
    for (int i = 0; i < c.items; ++i) input += "60000\n";
    const uint32_t queued = c.queued;
    const CliResult run = Mpigate(
        args, {.stdin_text = input,
               .while_running = SignalOnceBusy(c.signal_number, [queued](const v1::PoolStatus& s) {
                 return s.busy_workers() == 2 && s.queued_tasks() == queued;
               })});
    EXPECT_EQ(run.exit_code, kExitInterrupted) << run.stderr_text;
    EXPECT_EQ(run.stderr_text,
              absl::StrCat("mpigate: interrupted: 0 of ", c.items, " items done\n"));
    EXPECT_THAT(run.stdout_text, IsEmpty());
    // Nothing of the map is left: the queued tasks were cancelled and the running ones killed,
    // none ran to its end.
    const v1::PoolStatus after = ExpectPoolIdle();
    const uint64_t tasks = c.flags.back() == "--chunksize=2" ? (c.items + 1) / 2 : c.items;
    EXPECT_EQ(after.tasks_cancelled() - before.tasks_cancelled(), tasks);
    EXPECT_EQ(after.tasks_succeeded() - before.tasks_succeeded(), 0u);
  }
}

TEST_F(CliTest, SubmitInterruptedKillsItsTaskAndExits130) {
  const v1::PoolStatus before = ExpectPoolIdle();
  const CliResult run = Mpigate(
      {"submit", "sleep", "60000"},
      {.while_running = SignalOnceBusy(
           SIGINT, [](const v1::PoolStatus& status) { return status.busy_workers() == 1; })});
  EXPECT_EQ(run.exit_code, kExitInterrupted) << run.stderr_text;
  EXPECT_EQ(run.stderr_text, "mpigate: interrupted: 0 of 1 items done\n");
  EXPECT_THAT(run.stdout_text, IsEmpty());
  const v1::PoolStatus after = ExpectPoolIdle();
  EXPECT_EQ(after.tasks_cancelled() - before.tasks_cancelled(), 1u);
}

TEST_F(CliTest, MapOnATerminalRedrawsAProgressBarInPlace) {
  // 197 items that succeed and 3 that fail.
  std::string input;
  for (int i = 0; i < 200; ++i) absl::StrAppend(&input, i % 70 == 7 ? "NOPE\n" : "CLI_A\n");
  const CliResult run =
      Mpigate({"map", "getenv"}, {.stdin_text = input, .stderr_on_terminal = true});
  EXPECT_EQ(run.exit_code, kExitTaskFailed);
  EXPECT_EQ(std::count(run.stdout_text.begin(), run.stdout_text.end(), '\n'), 200);
  const std::string& terminal = run.stderr_text;
  // The first frame, drawn before anything ran; the last, left on screen, with every figure.
  EXPECT_THAT(terminal, StartsWith("\r[----------------------------------------]  0/200    0%  "
                                   "failed 0  0/s  ETA --\x1b[K"));
  EXPECT_THAT(terminal, ContainsRegex("\r\\[#{40}\\]  200/200  100%  failed 3  [0-9.]+k?/s  ETA "
                                      "0s\x1b\\[K\r\n"));
  // Failures erase the bar before they are printed (the terminal shows "\n" as "\r\n").
  EXPECT_THAT(terminal, HasSubstr("\r\x1b[Kmpigate: line 8: NOT_FOUND: "));
  EXPECT_THAT(terminal, HasSubstr("mpigate: line 78: NOT_FOUND: "));
  EXPECT_THAT(terminal,
              HasSubstr("\r\nmpigate: map getenv: 200 items, 197 succeeded, 3 failed in "));
  EXPECT_THAT(terminal, EndsWith("/s)\r\n"));
}

TEST_F(CliTest, MapDrawsNoBarWhenResultsGoToTheSameTerminal) {
  const CliResult run =
      Mpigate({"map", "echo"},
              {.stdin_text = "a\nb\n", .stderr_on_terminal = true, .stdout_on_terminal = true});
  EXPECT_EQ(run.exit_code, kExitSuccess);
  EXPECT_THAT(run.stdout_text, IsEmpty());
  EXPECT_THAT(run.stderr_text, AllOf(HasSubstr("a\r\nb\r\n"), Not(HasSubstr("ETA")),
                                     HasSubstr("mpigate: map echo: 2 items, 2 succeeded")));
}

TEST_F(CliTest, MapQuietOnATerminalDrawsNothing) {
  const CliResult run =
      Mpigate({"map", "-q", "echo"}, {.stdin_text = "a\nb\n", .stderr_on_terminal = true});
  EXPECT_EQ(run.exit_code, kExitSuccess);
  EXPECT_EQ(run.stdout_text, "a\nb\n");
  EXPECT_THAT(run.stderr_text, IsEmpty());
}

TEST_F(CliTest, StatusShowsThePoolItsSessionsAndFunctions) {
  absl::StatusOr<std::unique_ptr<Executor>> holder =
      Executor::Connect({.endpoint = server_->target(), .client_name = "cli_test_holder"});
  ASSERT_TRUE(holder.ok()) << holder.status();
  // Both workers busy, three tasks queued behind them.
  std::vector<Future> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back((*holder)->Submit("sleep", "600000"));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(tasks[i].WaitStarted(absl::Seconds(60)));
  ASSERT_TRUE(testing::AwaitPoolStatus(server_->target(), [](const v1::PoolStatus& status) {
                // The sessions of earlier tests' commands may take a moment to close.
                return status.busy_workers() == 2 && status.queued_tasks() == 3 &&
                       status.session_list_size() == 1;
              }).ok());

  CliResult run = Mpigate({"status"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_THAT(
      run.stdout_text,
      AllOf(StartsWith(absl::StrCat("endpoint   ", server_->target(), "\n")),
            HasSubstr("\nstate      READY\n"), HasSubstr("\nworkers    2: 2 busy, 0 idle\n"),
            HasSubstr("\nqueued     3 tasks\n"), ContainsRegex("\ntasks/s    [0-9.]+ over"),
            ContainsRegex("\nuptime     [0-9hms]+\n"),
            ContainsRegex("\nended      [0-9]+ succeeded, [0-9]+ failed, [0-9]+ cancelled"),
            HasSubstr("\nsessions   1\n  ID  CLIENT  "),
            ContainsRegex("\n +[0-9]+  cli_test_holder +3 +2 +[0-9.]+ [KMG]?i?B\n"),
            ContainsRegex("\nfunctions  [0-9]+\n"), ContainsRegex("\n  echo +Returns")));
  EXPECT_THAT(run.stderr_text, IsEmpty());

  run = Mpigate({"status", "--json"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_THAT(
      run.stdout_text,
      AllOf(StartsWith("{"), HasSubstr("\"busy_workers\": 2"), HasSubstr("\"queued_tasks\": \"3\""),
            HasSubstr("\"state\": \"POOL_STATE_READY\""),
            HasSubstr("\"client_name\": \"cli_test_holder\""),
            HasSubstr("\"recent_tasks_per_second\": "), HasSubstr("\"name\": \"echo\"")));

  (*holder)->Shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (Future& task : tasks) task.Interrupt();
  holder->reset();
  ExpectPoolIdle();
}

TEST_F(CliTest, TheEndpointComesFromTheEnvironmentOrTheEndpointFile) {
  CliResult run = RunCli({"status"}, {.env = {{"MPIGATE_ENDPOINT", server_->target()}}});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, StartsWith(absl::StrCat("endpoint   ", server_->target())));

  run = RunCli({"submit", "echo", "via the file"},
               {.env = {{"MPIGATE_ENDPOINT", std::nullopt},
                        {"MPIGATE_ENDPOINT_FILE", server_->endpoint_file()}}});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, "via the file");
}

// --- A service on TCP with TLS that requires a client certificate. ---

// The certificates of tests/shell/make_test_certs.sh, and a server that trusts their CA.
class CliAccessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new std::string(absl::StrCat(TestTmpDir(), "/certs"));
    absl::StatusOr<testing::CommandResult> made = testing::RunCommand(
        absl::StrCat(testing::RunfilePath("tests/shell/make_test_certs"), " ", *certs_));
    ASSERT_TRUE(made.ok()) << made.status();
    ASSERT_EQ(made->exit_code, 0) << made->output;
    server_ = new testing::ServerProcess();
    const absl::Status started = server_->Start(
        {.workers = 1,
         .flags = {"--listen=127.0.0.1:0", "--tls-cert=" + Cert("server.pem"),
                   "--tls-key=" + Cert("server.key"), "--tls-client-ca=" + Cert("ca.pem")}});
    ASSERT_TRUE(started.ok()) << started;
  }

  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->Stop().ok());
    }
    delete server_;
    server_ = nullptr;
  }

  static std::string Cert(const std::string& name) { return absl::StrCat(*certs_, "/", name); }

  // The access flags of a client the service lets in, but for those in `without`.
  static std::vector<std::string> AccessFlags(const std::vector<std::string>& without = {}) {
    const std::vector<std::pair<std::string, std::string>> all = {
        {"--token-file", TempFile("token", server_->token() + "\n")},
        {"--tls-ca", Cert("ca.pem")},
        {"--tls-cert", Cert("client.pem")},
        {"--tls-key", Cert("client.key")}};
    std::vector<std::string> flags;
    for (const auto& [flag, value] : all) {
      if (std::find(without.begin(), without.end(), flag) == without.end()) {
        flags.push_back(absl::StrCat(flag, "=", value));
      }
    }
    return flags;
  }

  // `mpigate --endpoint=<the server> <flags...> <args...>`, with no access variable set.
  static CliResult RunWith(const std::vector<std::string>& flags,
                           const std::vector<std::string>& args) {
    std::vector<std::string> command = {"--endpoint=" + server_->target(), "--connect-timeout=3s"};
    command.insert(command.end(), flags.begin(), flags.end());
    command.insert(command.end(), args.begin(), args.end());
    return RunCli(command, {.env = {{"MPIGATE_TOKEN", std::nullopt},
                                    {"MPIGATE_TLS_CA", std::nullopt},
                                    {"MPIGATE_TLS_CERT", std::nullopt},
                                    {"MPIGATE_TLS_KEY", std::nullopt}}});
  }

  static inline std::string* certs_ = nullptr;
  static inline testing::ServerProcess* server_ = nullptr;
};

TEST_F(CliAccessTest, TheAccessFlagsLetEveryCommandIn) {
  CliResult run = RunWith(AccessFlags(), {"status"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, StartsWith(absl::StrCat("endpoint   ", server_->target())));

  run = RunWith(AccessFlags(), {"submit", "echo", "over tls"});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, "over tls");

  run = RunCli({"map", "echo", "-"},
               {.stdin_text = "a\nb\n", .env = [] {
                  // Through the endpoint file: its token and tls=1, the certificates from the
                  // environment.
                  return std::vector<std::pair<std::string, std::optional<std::string>>>{
                      {"MPIGATE_ENDPOINT", std::nullopt},
                      {"MPIGATE_TOKEN", std::nullopt},
                      {"MPIGATE_ENDPOINT_FILE", server_->endpoint_file()},
                      {"MPIGATE_TLS_CA", Cert("ca.pem")},
                      {"MPIGATE_TLS_CERT", Cert("client.pem")},
                      {"MPIGATE_TLS_KEY", Cert("client.key")}};
                }()});
  EXPECT_EQ(run.exit_code, kExitSuccess) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, "a\nb\n");
}

TEST_F(CliAccessTest, WithoutTheTokenTheServiceRefusesTheCall) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"status"}, {"submit", "echo", "x"}}) {
    const CliResult run = RunWith(AccessFlags({"--token-file"}), args);
    EXPECT_EQ(run.exit_code, kExitError) << args[0];
    EXPECT_THAT(run.stderr_text, HasSubstr("UNAUTHENTICATED")) << args[0];
  }
  const CliResult wrong =
      RunWith({"--token-file=" + TempFile("wrong_token", "not-the-token-0123456789\n"),
               "--tls-ca=" + Cert("ca.pem"), "--tls-cert=" + Cert("client.pem"),
               "--tls-key=" + Cert("client.key")},
              {"status"});
  EXPECT_EQ(wrong.exit_code, kExitError);
  EXPECT_THAT(wrong.stderr_text, HasSubstr("UNAUTHENTICATED"));
}

TEST_F(CliAccessTest, AnUntrustedCaOrNoClientCertificateIsUnavailable) {
  std::vector<std::string> untrusted = AccessFlags({"--tls-ca"});
  untrusted.push_back("--tls-ca=" + Cert("other_ca.pem"));
  for (const std::vector<std::string>& flags :
       {untrusted, AccessFlags({"--tls-cert", "--tls-key"})}) {
    const CliResult run = RunWith(flags, {"status"});
    EXPECT_EQ(run.exit_code, kExitUnavailable) << absl::StrJoin(flags, " ");
    EXPECT_THAT(run.stderr_text, HasSubstr("UNAVAILABLE")) << absl::StrJoin(flags, " ");
  }
}

TEST_F(CliAccessTest, UnreadableAccessFilesAreNamed) {
  CliResult run = RunWith({"--token-file=" + TestTmpDir() + "/no_such_token"}, {"status"});
  EXPECT_EQ(run.exit_code, kExitUnavailable);
  EXPECT_THAT(run.stderr_text, HasSubstr("no_such_token"));
  run = RunWith({"--token-file=" + TempFile("short_token", "abc\n")}, {"submit", "echo", "x"});
  EXPECT_EQ(run.exit_code, kExitError);
  EXPECT_THAT(run.stderr_text, HasSubstr("shorter than 16 characters"));
  run = RunWith({"--tls-ca=" + Cert("ca.pem"), "--tls-cert=" + Cert("client.pem")}, {"status"});
  EXPECT_EQ(run.exit_code, kExitError);
  EXPECT_THAT(run.stderr_text, HasSubstr("needs its key"));
}

}  // namespace
}  // namespace mpigate
