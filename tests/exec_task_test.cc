#include "worker/exec_task.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/exec.pb.h"

namespace mpigate::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// Bounds every wait for something a program does, so that a broken exec fails a test instead of
// hanging it.
constexpr absl::Duration kPatience = absl::Seconds(20);
constexpr uint64_t kPatienceMs = 20'000;

v1::ExecRequest Request(std::initializer_list<std::string> argv) {
  v1::ExecRequest request;
  for (const std::string& arg : argv) request.add_argv(arg);
  return request;
}

v1::ExecRequest Shell(const std::string& script) { return Request({"sh", "-c", script}); }

// A directory of its own under the test's temporary directory.
std::string MakeTempDir() {
  const char* root = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(root != nullptr ? root : "/tmp", "/exec_task_test.XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  return pattern;
}

bool ReadFile(const std::string& path, std::string& contents) {
  std::ifstream file(path);
  if (!file) return false;
  std::stringstream buffer;
  buffer << file.rdbuf();
  contents = buffer.str();
  return true;
}

// Waits for a file a program writes with a rename (so that it is complete once it exists) and
// parses the pid in it.
bool AwaitPidFile(const std::string& path, pid_t& pid) {
  const absl::Time give_up = absl::Now() + kPatience;
  std::string contents;
  while (!ReadFile(path, contents)) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(contents), &pid);
}

// True if `pid` has ended: gone, or a zombie waiting for whoever inherited it to reap it.
bool Ended(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::string stat;
  if (!ReadFile(absl::StrCat("/proc/", pid, "/stat"), stat)) return true;
  // The state follows the command name, which is in parentheses and may hold anything.
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X');
}

// SIGKILL takes effect asynchronously for a process that is not the one being waited for.
bool AwaitEnded(pid_t pid) {
  const absl::Time give_up = absl::Now() + kPatience;
  while (!Ended(pid)) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// Bytes that differ from position to position, so that lost or reordered chunks show.
std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  uint32_t state = 12345;
  for (char& byte : bytes) {
    state = state * 1103515245u + 12345u;
    byte = static_cast<char>(state >> 24);
  }
  return bytes;
}

class ExecTaskTest : public ::testing::Test {
 protected:
  absl::StatusOr<v1::ExecResponse> Run(const v1::ExecRequest& request) {
    const TaskContext context(/*rank=*/0, /*pool_size=*/1, &cancelled_);
    absl::StatusOr<std::string> result =
        ExecTaskDefinition().function(context, request.SerializeAsString());
    if (!result.ok()) return result.status();
    v1::ExecResponse response;
    if (!response.ParseFromString(*result)) {
      return absl::InternalError("the result is not an ExecResponse");
    }
    return response;
  }

  std::atomic<bool> cancelled_{false};
};

TEST_F(ExecTaskTest, DefinitionIsTypedExec) {
  const TaskDefinition definition = ExecTaskDefinition();
  EXPECT_EQ(definition.name, "exec");
  EXPECT_EQ(definition.request_type, "mpigate.v1.ExecRequest");
  EXPECT_EQ(definition.response_type, "mpigate.v1.ExecResponse");
}

TEST_F(ExecTaskTest, CatCopiesStdinToStdout) {
  v1::ExecRequest request = Request({"cat"});
  request.set_stdin("hello\nworld");
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "hello\nworld");
  EXPECT_THAT(response->stderr(), IsEmpty());
  EXPECT_EQ(response->exit_code(), 0);
  EXPECT_EQ(response->signal(), 0);
  EXPECT_GT(response->wall_us(), 0u);
}

TEST_F(ExecTaskTest, StdinIsEmptyWhenNoneIsGiven) {
  absl::StatusOr<v1::ExecResponse> response = Run(Request({"wc", "-c"}));
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(absl::StripAsciiWhitespace(response->stdout()), "0");
}

TEST_F(ExecTaskTest, CapturesStderrApartFromStdout) {
  absl::StatusOr<v1::ExecResponse> response = Run(Shell("echo out; echo err >&2"));
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "out\n");
  EXPECT_EQ(response->stderr(), "err\n");
}

TEST_F(ExecTaskTest, EnvIsSetOnTopOfTheWorkers) {
  ASSERT_EQ(setenv("MPIGATE_EXEC_TEST_INHERITED", "inherited", 1), 0);
  ASSERT_EQ(setenv("MPIGATE_EXEC_TEST_OVERRIDDEN", "worker's", 1), 0);
  v1::ExecRequest request =
      Shell("echo \"$X|$MPIGATE_EXEC_TEST_INHERITED|$MPIGATE_EXEC_TEST_OVERRIDDEN\"");
  (*request.mutable_env())["X"] = "a value";
  (*request.mutable_env())["MPIGATE_EXEC_TEST_OVERRIDDEN"] = "request's";
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "a value|inherited|request's\n");
}

TEST_F(ExecTaskTest, ClearEnvStartsFromAnEmptyEnvironment) {
  ASSERT_EQ(setenv("MPIGATE_EXEC_TEST_INHERITED", "inherited", 1), 0);
  // `env` is still found: the lookup uses the worker's PATH.
  v1::ExecRequest request = Request({"env"});
  request.set_clear_env(true);
  (*request.mutable_env())["ONLY"] = "this";
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "ONLY=this\n");
}

TEST_F(ExecTaskTest, RunsInTheWorkingDirectory) {
  const std::string directory = MakeTempDir();
  std::ofstream(directory + "/marker") << "found it";
  v1::ExecRequest request = Request({"cat", "marker"});
  request.set_working_directory(directory);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "found it");
}

TEST_F(ExecTaskTest, MissingWorkingDirectoryIsNotFoundAndSaysSo) {
  const std::string directory = MakeTempDir() + "/no-such-directory";
  v1::ExecRequest request = Request({"true"});
  request.set_working_directory(directory);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(response.status().message(), HasSubstr("working directory"));
  EXPECT_THAT(response.status().message(), HasSubstr(directory));
}

TEST_F(ExecTaskTest, NonZeroExitIsAResult) {
  absl::StatusOr<v1::ExecResponse> response = Run(Shell("echo partial; exit 3"));
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->exit_code(), 3);
  EXPECT_EQ(response->signal(), 0);
  EXPECT_EQ(response->stdout(), "partial\n");
}

TEST_F(ExecTaskTest, CheckPassesAZeroExit) {
  v1::ExecRequest request = Request({"true"});
  request.set_check(true);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->exit_code(), 0);
}

TEST_F(ExecTaskTest, CheckFailsANonZeroExitWithTheTailOfStderr) {
  // More stderr than the message quotes: the start is dropped, the end kept.
  v1::ExecRequest request = Shell(
      "echo the-beginning >&2; head -c 10000 /dev/zero | tr '\\0' x >&2; "
      "echo >&2; echo the-end >&2; exit 1");
  request.set_check(true);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnknown);
  const std::string message(response.status().message());
  EXPECT_THAT(message, HasSubstr("'sh' exited with status 1"));
  EXPECT_THAT(message, HasSubstr("the-end"));
  EXPECT_THAT(message, Not(HasSubstr("the-beginning")));
  EXPECT_LT(message.size(), 3000u);
}

TEST_F(ExecTaskTest, SignalThatEndsTheProgramIsReported) {
  absl::StatusOr<v1::ExecResponse> response = Run(Shell("kill -TERM $$"));
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->exit_code(), -1);
  EXPECT_EQ(response->signal(), SIGTERM);
}

TEST_F(ExecTaskTest, CheckFailsAProgramEndedByASignal) {
  v1::ExecRequest request = Shell("kill -TERM $$");
  request.set_check(true);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(response.status().message(), HasSubstr(absl::StrCat("signal ", SIGTERM)));
}

TEST_F(ExecTaskTest, ProgramStartsWithDefaultSignalHandling) {
  // A worker may ignore SIGPIPE or block it on its task thread; either would be inherited through
  // exec, and `kill -PIPE` would then not end the program.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction previous_action {};
  ASSERT_EQ(sigaction(SIGPIPE, &ignore, &previous_action), 0);
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  sigset_t previous_mask;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &sigpipe, &previous_mask), 0);
  absl::StatusOr<v1::ExecResponse> response = Run(Shell("kill -PIPE $$"));
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr), 0);
  ASSERT_EQ(sigaction(SIGPIPE, &previous_action, nullptr), 0);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->signal(), SIGPIPE);
}

TEST_F(ExecTaskTest, WorkerDescriptorsAreNotInherited) {
  // As MPI's or a task library's might be: open without close-on-exec.
  const int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 3);
  absl::StatusOr<v1::ExecResponse> response =
      Run(Shell(absl::StrCat("test -e /proc/$$/fd/", fd, " && echo leaked || echo closed")));
  close(fd);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->stdout(), "closed\n");
}

TEST_F(ExecTaskTest, TimeLimitKillsTheWholeGroup) {
  const std::string pid_file = MakeTempDir() + "/pid";
  // The background sleep is the program's child: the kill must reach it too.
  v1::ExecRequest request = Shell(absl::StrCat("sleep 100 & echo $! > ", pid_file, ".tmp && mv ",
                                               pid_file, ".tmp ", pid_file, "; wait"));
  request.set_time_limit_ms(1000);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(response.status().message(), HasSubstr("'sh'"));
  EXPECT_THAT(response.status().message(), HasSubstr("1000 ms"));
  pid_t grandchild = 0;
  ASSERT_TRUE(AwaitPidFile(pid_file, grandchild));
  EXPECT_TRUE(AwaitEnded(grandchild)) << "the background sleep " << grandchild << " survived";
}

TEST_F(ExecTaskTest, WhatTheProgramLeavesRunningIsKilledWhenItExits) {
  // Without that, the background sleep would also hold stdout open for 100 s.
  v1::ExecRequest request = Shell("sleep 100 & echo $!");
  request.set_time_limit_ms(kPatienceMs);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->exit_code(), 0);
  pid_t background = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(response->stdout()), &background));
  EXPECT_TRUE(AwaitEnded(background)) << "the background sleep " << background << " survived";
}

TEST_F(ExecTaskTest, CancellingARunningProgramKillsItsGroup) {
  const std::string pid_file = MakeTempDir() + "/pid";
  v1::ExecRequest request = Shell(absl::StrCat("sleep 100 & echo $! > ", pid_file, ".tmp && mv ",
                                               pid_file, ".tmp ", pid_file, "; wait"));
  // Should the flag never be set, the test fails with DEADLINE_EXCEEDED instead of hanging.
  request.set_time_limit_ms(kPatienceMs);
  pid_t grandchild = 0;
  bool started = false;
  std::thread canceller([&] {
    started = AwaitPidFile(pid_file, grandchild);
    cancelled_ = true;
  });
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  canceller.join();
  ASSERT_TRUE(started);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(AwaitEnded(grandchild)) << "the background sleep " << grandchild << " survived";
}

TEST_F(ExecTaskTest, CancelledBeforeTheStartRunsNothing) {
  const std::string marker = MakeTempDir() + "/ran";
  cancelled_ = true;
  v1::ExecRequest request = Request({"touch", marker});
  request.set_time_limit_ms(kPatienceMs);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kCancelled);
  EXPECT_NE(access(marker.c_str(), F_OK), 0) << "the program ran";
}

TEST_F(ExecTaskTest, OutputUpToTheLimitIsKept) {
  v1::ExecRequest request = Request({"head", "-c", "1000", "/dev/zero"});
  request.set_max_output_bytes(1000);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_THAT(response->stdout(), SizeIs(1000));
}

TEST_F(ExecTaskTest, StdoutPastTheLimitIsResourceExhausted) {
  v1::ExecRequest request = Request({"head", "-c", "1001", "/dev/zero"});
  request.set_max_output_bytes(1000);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response.status().message(), HasSubstr("1000 bytes to stdout"));
}

TEST_F(ExecTaskTest, StderrPastTheLimitIsResourceExhausted) {
  // It would go on writing for ever: the kill is what ends it.
  v1::ExecRequest request = Shell("yes >&2");
  request.set_max_output_bytes(1000);
  request.set_time_limit_ms(kPatienceMs);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(response.status().message(), HasSubstr("1000 bytes to stderr"));
}

TEST_F(ExecTaskTest, MissingProgramIsNotFound) {
  absl::StatusOr<v1::ExecResponse> response = Run(Request({"mpigate-no-such-program", "x"}));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(response.status().message(), HasSubstr("mpigate-no-such-program"));
  EXPECT_THAT(response.status().message(), HasSubstr(std::strerror(ENOENT)));
}

TEST_F(ExecTaskTest, FileThatIsNotExecutableIsNotFound) {
  const std::string path = MakeTempDir() + "/script";
  std::ofstream(path) << "#!/bin/sh\necho should not run\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  absl::StatusOr<v1::ExecResponse> response = Run(Request({path}));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(response.status().message(), HasSubstr(path));
}

TEST_F(ExecTaskTest, EmptyArgvIsInvalid) {
  absl::StatusOr<v1::ExecResponse> response = Run(v1::ExecRequest());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ExecTaskTest, NulBytesAndBadVariableNamesAreInvalid) {
  v1::ExecRequest nul_argument = Request({"echo", std::string("a\0b", 3)});
  EXPECT_EQ(Run(nul_argument).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ExecRequest bad_name = Request({"true"});
  (*bad_name.mutable_env())["A=B"] = "c";
  EXPECT_EQ(Run(bad_name).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ExecTaskTest, EightMegabytesThroughCatBothWays) {
  // Far more than a pipe holds in either direction: stdin must be fed while stdout is drained.
  const std::string input = Pattern(8 << 20);
  v1::ExecRequest request = Request({"cat"});
  request.set_stdin(input);
  request.set_time_limit_ms(kPatienceMs);
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  ASSERT_EQ(response->stdout().size(), input.size());
  EXPECT_TRUE(response->stdout() == input) << "the bytes differ";
}

TEST_F(ExecTaskTest, ProgramThatReadsNoStdinDoesNotKillTheWorker) {
  // Its stdin closes with most of the input unwritten: the write fails with EPIPE and raises
  // SIGPIPE, which must neither kill this process nor be left pending.
  v1::ExecRequest request = Request({"true"});
  request.set_stdin(Pattern(8 << 20));
  absl::StatusOr<v1::ExecResponse> response = Run(request);
  ASSERT_EQ(response.status(), absl::OkStatus());
  EXPECT_EQ(response->exit_code(), 0);
  sigset_t pending;
  ASSERT_EQ(sigpending(&pending), 0);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  sigset_t blocked;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &blocked), 0);
  EXPECT_FALSE(sigismember(&blocked, SIGPIPE)) << "the thread's signal mask was not restored";
}

}  // namespace
}  // namespace mpigate::worker
