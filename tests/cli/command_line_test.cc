// The `mpigate` command line's parsing, usage texts and exit codes: pure logic, no service.
#include "cli/command_line.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/exit_codes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

CommandLine Parsed(const std::vector<std::string>& args) {
  absl::StatusOr<CommandLine> line = ParseCommandLine(args);
  EXPECT_TRUE(line.ok()) << line.status();
  return line.ok() ? *line : CommandLine();
}

absl::Status ParseError(const std::vector<std::string>& args) {
  return ParseCommandLine(args).status();
}

TEST(ParseCommandLineTest, SubmitTakesAFunctionAndAnOptionalPayload) {
  CommandLine line = Parsed({"submit", "echo", "hello"});
  EXPECT_EQ(line.command, Command::kSubmit);
  EXPECT_FALSE(line.help);
  EXPECT_EQ(line.function, "echo");
  EXPECT_EQ(line.payload, "hello");
  EXPECT_EQ(line.timeout, absl::InfiniteDuration());
  EXPECT_EQ(line.connect_timeout, kDefaultConnectTimeout);

  // No payload, or `-`: stdin.
  EXPECT_EQ(Parsed({"submit", "echo"}).payload, std::nullopt);
  EXPECT_EQ(Parsed({"submit", "echo", "-"}).payload, std::nullopt);
  // An empty payload is a payload.
  EXPECT_EQ(Parsed({"submit", "echo", ""}).payload, "");
  // After `--`, a payload may start with a dash.
  EXPECT_EQ(Parsed({"submit", "echo", "--", "--not-a-flag"}).payload, "--not-a-flag");
}

TEST(ParseCommandLineTest, FlagsTakeValuesEitherWayAndGlobalFlagsGoAnywhere) {
  CommandLine line = Parsed({"--endpoint", "unix:/s.sock", "map", "--chunksize=8", "--timeout",
                             "1m30s", "fn", "items.txt", "--connect-timeout=2.5", "-q"});
  EXPECT_EQ(line.command, Command::kMap);
  EXPECT_EQ(line.endpoint, "unix:/s.sock");
  EXPECT_EQ(line.chunksize, 8);
  EXPECT_EQ(line.timeout, absl::Seconds(90));
  EXPECT_EQ(line.connect_timeout, absl::Milliseconds(2500));
  EXPECT_TRUE(line.quiet);
  EXPECT_EQ(line.function, "fn");
  EXPECT_EQ(line.input_path, "items.txt");

  EXPECT_EQ(Parsed({"map", "fn"}).input_path, "-");
  EXPECT_TRUE(Parsed({"map", "--unordered", "fn"}).unordered);
  // Chunks may come unordered: every item's result says which line it answers.
  line = Parsed({"map", "--unordered", "--chunksize=4", "fn"});
  EXPECT_TRUE(line.unordered);
  EXPECT_EQ(line.chunksize, 4);
  EXPECT_TRUE(Parsed({"status", "--json"}).json);
  EXPECT_EQ(Parsed({"shutdown", "--reason", "maintenance"}).reason, "maintenance");
  EXPECT_EQ(Parsed({"status", "--endpoint=node7:50051"}).endpoint, "node7:50051");
}

TEST(ParseCommandLineTest, AccessFlagsAreGlobal) {
  CommandLine line = Parsed({"--token-file=/run/token", "submit", "fn", "--tls-ca", "ca.pem",
                             "--tls-cert=me.pem", "--tls-key=me.key"});
  EXPECT_EQ(line.token_file, "/run/token");
  EXPECT_EQ(line.tls_ca, "ca.pem");
  EXPECT_EQ(line.tls_cert, "me.pem");
  EXPECT_EQ(line.tls_key, "me.key");
  line = Parsed({"status"});
  EXPECT_EQ(line.token_file, "");
  EXPECT_EQ(line.tls_ca, "");
}

TEST(ParseCommandLineTest, HelpWinsWhereverItIs) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h"}, {"help"}, {"--endpoint=x", "--help"}}) {
    CommandLine line = Parsed(args);
    EXPECT_TRUE(line.help);
    EXPECT_EQ(line.command, Command::kNone);
  }
  // A command's help needs none of its arguments, and ignores bad ones.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"map", "--help"}, {"map", "-h", "--chunksize=0"}, {"help", "map"}, {"-h", "map"}}) {
    CommandLine line = Parsed(args);
    EXPECT_TRUE(line.help);
    EXPECT_EQ(line.command, Command::kMap);
  }
}

TEST(ParseCommandLineTest, ServePassesEverythingAfterItToTheServer) {
  CommandLine line = Parsed({"serve", "--workers=4", "--listen", ":50051", "extra"});
  EXPECT_EQ(line.command, Command::kServe);
  EXPECT_FALSE(line.help);
  EXPECT_EQ(line.server_args,
            (std::vector<std::string>{"--workers=4", "--listen", ":50051", "extra"}));
  EXPECT_TRUE(Parsed({"serve", "--workers=4", "-h"}).help);
  // After `--`, even --help is the server's.
  line = Parsed({"serve", "--", "--help"});
  EXPECT_FALSE(line.help);
  EXPECT_EQ(line.server_args, (std::vector<std::string>{"--help"}));
}

TEST(ParseCommandLineTest, UsageErrorsAreInvalidArgumentAndPointAtTheRightHelp) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "no command given (see `mpigate --help`)"},
      {{"frobnicate"}, "no such command 'frobnicate' (see `mpigate --help`)"},
      {{"help", "frobnicate"}, "no such command 'frobnicate'"},
      {{"submit"}, "submit: expects FUNCTION [PAYLOAD|-], got 0 arguments (see `mpigate submit"},
      {{"submit", "echo", "a", "b"}, "submit: expects FUNCTION [PAYLOAD|-], got 3 arguments"},
      {{"submit", ""}, "submit: FUNCTION must not be empty"},
      {{"map", "fn", "a", "b"}, "map: expects FUNCTION [FILE|-], got 3 arguments"},
      {{"map", "fn", "--chunksize=0"}, "map: --chunksize must be a whole number of at least 1"},
      {{"map", "fn", "--chunksize=many"}, "got 'many'"},
      {{"map", "fn", "--unordered=yes"}, "map: --unordered takes no value"},
      {{"map", "fn", "--timeout"}, "map: --timeout needs a value"},
      {{"submit", "fn", "--timeout=soon"}, "--timeout must be a duration such as 500ms"},
      {{"submit", "fn", "--timeout=0"}, "--timeout must be above zero"},
      {{"status", "--connect-timeout=-1s"}, "--connect-timeout must be above zero"},
      {{"status", "extra"}, "status: expects no arguments, got 1 argument"},
      {{"status", "--bogus"}, "status: no such flag '--bogus' (see `mpigate status --help`)"},
      {{"status", "-x"}, "no such flag '-x'"},
      {{"status", "--reason=why"}, "status: takes no --reason"},
      {{"shutdown", "--json"}, "shutdown: takes no --json"},
      {{"submit", "fn", "--chunksize=2"}, "submit: takes no --chunksize"},
      {{"status", "--endpoint="}, "--endpoint needs a gRPC target"},
      {{"--endpoint=x", "serve"}, "serve: --endpoint is a client flag"},
      {{"status", "--token-file="}, "--token-file needs a file's path"},
      {{"map", "fn", "--tls-key="}, "--tls-key needs a file's path"},
  };
  for (const Case& c : cases) {
    const absl::Status status = ParseError(c.args);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(ParseDurationFlagTest, TakesAbslDurationsAndBareSeconds) {
  EXPECT_EQ(ParseDurationFlag("timeout", "500ms").value(), absl::Milliseconds(500));
  EXPECT_EQ(ParseDurationFlag("timeout", "2m").value(), absl::Minutes(2));
  EXPECT_EQ(ParseDurationFlag("timeout", "3").value(), absl::Seconds(3));
  EXPECT_EQ(ParseDurationFlag("timeout", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDurationFlag("timeout", "inf").value(), absl::InfiniteDuration());
  EXPECT_EQ(ParseDurationFlag("timeout", "nan").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDurationFlag("timeout", "-inf").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UsageTextTest, EveryCommandHasUsageNamingItAndItsExitCodes) {
  for (Command command :
       {Command::kServe, Command::kSubmit, Command::kMap, Command::kStatus, Command::kShutdown}) {
    const std::string text = UsageText(command);
    EXPECT_THAT(text, StartsWith(absl::StrCat("Usage: mpigate ", CommandName(command))));
    EXPECT_THAT(text, HasSubstr("Exit codes:"));
    if (command == Command::kSubmit || command == Command::kMap) {
      EXPECT_THAT(text, HasSubstr("130 interrupted"));
    }
    EXPECT_EQ(text.back(), '\n');
  }
  const std::string top = UsageText(Command::kNone);
  EXPECT_THAT(top, StartsWith("Usage: mpigate [--endpoint=TARGET]"));
  for (const char* line :
       {"  0  success", "  1  the task", "  2  usage error", "  3  service unavailable",
        "  4  any other error", "  130  interrupted by SIGINT or SIGTERM"}) {
    EXPECT_THAT(top, HasSubstr(line));
  }
}

TEST(ExitCodesTest, ServiceErrorsThatMeanUnreachableAreThree) {
  EXPECT_EQ(ExitCodeForServiceError(absl::OkStatus()), kExitSuccess);
  EXPECT_EQ(ExitCodeForServiceError(absl::UnavailableError("no")), kExitUnavailable);
  EXPECT_EQ(ExitCodeForServiceError(absl::DeadlineExceededError("slow")), kExitUnavailable);
  EXPECT_EQ(ExitCodeForServiceError(absl::NotFoundError("no endpoint")), kExitUnavailable);
  EXPECT_EQ(ExitCodeForServiceError(absl::InternalError("bug")), kExitError);
  EXPECT_EQ(ExitCodeForServiceError(absl::PermissionDeniedError("x")), kExitError);
}

TEST(ExitCodesTest, TaskErrorsAreOneButUnavailableIsThree) {
  EXPECT_EQ(ExitCodeForTaskError(absl::OkStatus()), kExitSuccess);
  EXPECT_EQ(ExitCodeForTaskError(absl::UnknownError("boom")), kExitTaskFailed);
  EXPECT_EQ(ExitCodeForTaskError(absl::NotFoundError("no such function")), kExitTaskFailed);
  EXPECT_EQ(ExitCodeForTaskError(absl::DeadlineExceededError("late")), kExitTaskFailed);
  EXPECT_EQ(ExitCodeForTaskError(absl::CancelledError("")), kExitTaskFailed);
  EXPECT_EQ(ExitCodeForTaskError(absl::UnavailableError("draining")), kExitUnavailable);
  // Scripts rely on the numbers themselves.
  EXPECT_EQ(kExitSuccess, 0);
  EXPECT_EQ(kExitTaskFailed, 1);
  EXPECT_EQ(kExitUsage, 2);
  EXPECT_EQ(kExitUnavailable, 3);
  EXPECT_EQ(kExitError, 4);
  EXPECT_EQ(kExitInterrupted, 130);
}

}  // namespace
}  // namespace mpigate::cli
