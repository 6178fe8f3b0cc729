// Unit tests of the worker's task runner without MPI: the real mpigate-runner, spawned and driven
// through RunnerProcess as a worker would, with the test task library for crashes; and the stream
// frames it speaks, over a socketpair.
#include "worker/runner_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpigate/v1/exec.pb.h"
#include "tests/server_process.h"
#include "wire/frames.pb.h"
#include "wire/stream_frames.h"
#include "wire/task_peek.h"
#include "worker/worker_options.h"

extern char** environ;

namespace mpigate::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

int Code(absl::StatusCode code) { return static_cast<int>(code); }

// A wait for something that must happen, long enough never to be the reason a test fails.
constexpr absl::Duration kPatience = absl::Seconds(30);

RunnerProcess::Options RunnerOptions(Initializer initializer = {}, bool allow_exec = false) {
  RunnerConfig config;
  config.worker.task_libs = {testing::RunfilePath("tests/testdata/libsample_tasks.so")};
  config.worker.initializer = std::move(initializer);
  config.worker.allow_exec = allow_exec;
  config.rank = 1;
  config.pool_size = 2;
  config.worker_pid = static_cast<int>(getpid());
  return {testing::RunfilePath("worker/mpigate-runner"), ToRunnerArgs(config)};
}

std::string TaskBytes(uint64_t key, const std::string& function, const std::string& payload) {
  wire::TaskFrame task;
  task.set_task_key(key);
  task.set_function(function);
  task.set_payload(payload);
  return task.SerializeAsString();
}

// The runner's hello, however long it takes.
absl::StatusOr<wire::HelloFrame> HelloOf(RunnerProcess& runner) {
  absl::StatusOr<std::optional<wire::HelloFrame>> hello =
      runner.AwaitHello(absl::InfiniteDuration());
  if (!hello.ok()) return hello.status();
  return **std::move(hello);
}

// The next event other than progress.
RunnerEvent AwaitEnd(RunnerProcess& runner) {
  RunnerEvent event;
  do {
    event = runner.Await(kPatience);
  } while (event.kind == RunnerEvent::Kind::kProgress);
  return event;
}

wire::ResultFrame ResultOf(const RunnerEvent& event) {
  EXPECT_EQ(event.kind, RunnerEvent::Kind::kResult) << event.death;
  wire::ResultFrame result;
  EXPECT_TRUE(result.ParseFromString(event.result));
  return result;
}

// True once `pid` is neither running nor a zombie of this process.
bool Gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

// True while `pid` runs: it exists and is not a zombie (whoever adopted an orphan reaps it in its
// own time).
bool Running(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t comm_end = line.rfind(')');
  return comm_end != std::string::npos && comm_end + 2 < line.size() && line[comm_end + 2] != 'Z' &&
         line[comm_end + 2] != 'X';
}

class RunnerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RunnerProcess>> spawned = RunnerProcess::Spawn(RunnerOptions());
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    runner_ = *std::move(spawned);
    absl::StatusOr<wire::HelloFrame> hello = HelloOf(*runner_);
    ASSERT_TRUE(hello.ok()) << hello.status();
    EXPECT_FALSE(hello->has_error());
    EXPECT_FALSE(hello->has_initializer_error());
    EXPECT_EQ(hello->pid(), runner_->pid());
  }

  std::unique_ptr<RunnerProcess> runner_;
};

TEST_F(RunnerProcessTest, RunsTasksWithTheWorkersPlaceInThePool) {
  runner_->SendTask(TaskBytes(5, "echo", "hello"));
  wire::ResultFrame result = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(result.task_key(), 5u);
  EXPECT_EQ(result.result(), "hello");

  runner_->SendTask(TaskBytes(6, "sample.whoami", ""));
  EXPECT_EQ(ResultOf(AwaitEnd(*runner_)).result(), "1");
  runner_->SendTask(TaskBytes(7, "sample.process", ""));
  EXPECT_EQ(ResultOf(AwaitEnd(*runner_)).result(), "mpigate-runner");
}

TEST_F(RunnerProcessTest, ChunksAndErrorsComeBackAsTheyWouldInProcess) {
  wire::TaskFrame chunk;
  chunk.set_task_key(8);
  chunk.set_function("sample.reject");
  chunk.add_items("a");
  chunk.add_items("b");
  runner_->SendTask(chunk.SerializeAsString());
  wire::ResultFrame result = ResultOf(AwaitEnd(*runner_));
  ASSERT_EQ(result.items_size(), 2);
  EXPECT_EQ(result.items(1).error().code(), Code(absl::StatusCode::kOutOfRange));

  runner_->SendTask(TaskBytes(9, "sample.throw", "x"));
  result = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(result.error().exception_type(), "std::domain_error");
  runner_->SendTask(TaskBytes(10, "sample.gang_info", ""));
  EXPECT_EQ(ResultOf(AwaitEnd(*runner_)).error().code(),
            Code(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RunnerProcessTest, A64MiBPayloadMakesTheRoundTripIntact) {
  std::string payload(64 << 20, '\0');
  for (size_t i = 0; i < payload.size(); i += 4096) payload[i] = static_cast<char>(i / 4096);
  runner_->SendTask(TaskBytes(11, "echo", payload));
  const wire::ResultFrame result = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(result.result().size(), payload.size());
  EXPECT_TRUE(result.result() == payload);
}

TEST_F(RunnerProcessTest, ProgressIsReportedAndACancelSetsTheFlag) {
  runner_->SendTask(TaskBytes(12, "sleep", "60000"));
  const RunnerEvent progress = runner_->Await(kPatience);
  ASSERT_EQ(progress.kind, RunnerEvent::Kind::kProgress) << progress.death;
  EXPECT_EQ(progress.progress.task_key(), 12u);
  // A cancel of another task is ignored; the running one's stops the sleep.
  runner_->SendCancel(99);
  runner_->SendCancel(12);
  const wire::ResultFrame result = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(result.task_key(), 12u);
  EXPECT_EQ(result.error().code(), Code(absl::StatusCode::kCancelled));
}

TEST_F(RunnerProcessTest, KillEndsAnEndlessLoopAndReapsTheRunner) {
  runner_->SendTask(TaskBytes(13, "sample.crash", "spin"));
  // It says it has started, then spins.
  EXPECT_EQ(runner_->Await(absl::Seconds(30)).kind, RunnerEvent::Kind::kProgress);
  EXPECT_EQ(runner_->Await(absl::Milliseconds(50)).kind, RunnerEvent::Kind::kNone);
  const pid_t pid = runner_->pid();
  runner_->Kill();
  EXPECT_FALSE(runner_->alive());
  EXPECT_TRUE(Gone(pid));
  EXPECT_EQ(runner_->Await(absl::ZeroDuration()).kind, RunnerEvent::Kind::kDied);
}

// exec starts its program in a process group of its own, which a kill of the runner's group
// would miss; killing the runner ends it, and what it started, all the same.
TEST(RunnerKillTest, KillEndsWhatExecStartedInAProcessGroupOfItsOwn) {
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner =
      RunnerProcess::Spawn(RunnerOptions({}, /*allow_exec=*/true));
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE(HelloOf(**runner).ok());
  const std::string fifo = absl::StrCat(std::getenv("TEST_TMPDIR"), "/exec_pids");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // The shell says its pid and its background sleep's, then waits for the sleep.
  v1::ExecRequest request;
  for (const char* arg : {"/bin/sh", "-c", "sleep 3600 & echo $$ $! > \"$0\"; wait"}) {
    request.add_argv(arg);
  }
  request.add_argv(fifo);
  (*runner)->SendTask(TaskBytes(20, "exec", request.SerializeAsString()));
  std::ifstream pids(fifo);  // Opens once the shell opens its end.
  pid_t shell = 0;
  pid_t sleeper = 0;
  ASSERT_TRUE(pids >> shell >> sleeper);
  EXPECT_TRUE(Running(shell));
  EXPECT_TRUE(Running(sleeper));
  EXPECT_NE(getpgid(shell), (*runner)->pid()) << "exec's program is in the runner's group";

  (*runner)->Kill();
  EXPECT_FALSE(Running(shell));
  EXPECT_FALSE(Running(sleeper));
}

TEST_F(RunnerProcessTest, AWaitEndsWhenItsWakeDescriptorIsReadableAndResultsComeFirst) {
  int wake[2];
  ASSERT_EQ(pipe(wake), 0);
  // Idle runner, nothing to wake for: the wait times out.
  EXPECT_EQ(runner_->Await(absl::Milliseconds(10), wake[0]).kind, RunnerEvent::Kind::kNone);
  // Readable: an endless wait ends at once, with nothing from the runner, which lives on.
  ASSERT_EQ(write(wake[1], "r", 1), 1);
  EXPECT_EQ(runner_->Await(absl::InfiniteDuration(), wake[0]).kind, RunnerEvent::Kind::kNone);
  EXPECT_TRUE(runner_->alive());
  // While it stays readable, the runner's result still comes through: the socket comes first.
  runner_->SendTask(TaskBytes(21, "echo", "woken"));
  const absl::Time deadline = absl::Now() + kPatience;
  RunnerEvent event;
  do {
    event = runner_->Await(kPatience, wake[0]);
  } while (event.kind == RunnerEvent::Kind::kNone && absl::Now() < deadline);
  EXPECT_EQ(ResultOf(event).result(), "woken");
  close(wake[0]);
  close(wake[1]);
}

TEST_F(RunnerProcessTest, TasksHandedOverTogetherRunInOrderAndAQueuedOneCanBeDropped) {
  runner_->SendTask(TaskBytes(20, "sleep", "300"));
  runner_->SendTask(TaskBytes(21, "echo", "dropped"));
  runner_->SendTask(TaskBytes(22, "echo", "last"));
  runner_->SendCancel(21);
  // Answered at once, while the sleep still runs: it never started.
  const wire::ResultFrame dropped = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(dropped.task_key(), 21u);
  EXPECT_EQ(dropped.error().code(), Code(absl::StatusCode::kCancelled));
  EXPECT_EQ(dropped.error().message(), "cancelled before it started, in the worker's backlog");
  const wire::ResultFrame slept = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(slept.task_key(), 20u);
  EXPECT_FALSE(slept.has_error()) << slept.error().message();
  const wire::ResultFrame last = ResultOf(AwaitEnd(*runner_));
  EXPECT_EQ(last.task_key(), 22u);
  EXPECT_EQ(last.result(), "last");
}

struct Death {
  std::string how;
  std::string described;
};

class RunnerDeathTest : public RunnerProcessTest, public ::testing::WithParamInterface<Death> {};

TEST_P(RunnerDeathTest, IsDescribedAndAReplacementServes) {
  const pid_t pid = runner_->pid();
  runner_->SendTask(TaskBytes(14, "sample.crash", GetParam().how));
  const RunnerEvent event = AwaitEnd(*runner_);
  ASSERT_EQ(event.kind, RunnerEvent::Kind::kDied);
  EXPECT_EQ(event.death, absl::StrCat("task runner (pid ", pid, ") ", GetParam().described));
  EXPECT_FALSE(runner_->alive());
  EXPECT_TRUE(Gone(pid));

  absl::StatusOr<std::unique_ptr<RunnerProcess>> replacement =
      RunnerProcess::Spawn(RunnerOptions());
  ASSERT_TRUE(replacement.ok()) << replacement.status();
  ASSERT_TRUE(HelloOf(**replacement).ok());
  (*replacement)->SendTask(TaskBytes(15, "echo", "again"));
  EXPECT_EQ(ResultOf(AwaitEnd(**replacement)).result(), "again");
}

INSTANTIATE_TEST_SUITE_P(
    EachWayToDie, RunnerDeathTest,
    ::testing::Values(
        Death{"segv", "was killed by signal 11 (SIGSEGV, Segmentation fault)"},
        Death{"abort", "was killed by signal 6 (SIGABRT, Aborted)"},
        Death{"exit:3", "exited with status 3"}, Death{"exit:0", "exited with status 0"},
        Death{"sigkill",
              "was killed by signal 9 (SIGKILL, Killed; the kernel's OOM killer sends this too)"}),
    [](const ::testing::TestParamInfo<Death>& info) {
      std::string name = info.param.how;
      for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return name;
    });

TEST(RunnerStartTest, AWaitForTheHelloEndsAtItsTimeoutWhileTheInitializerRuns) {
  // The worker sends its heartbeats between such waits (RunnerExecutor::StartRunner).
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner =
      RunnerProcess::Spawn(RunnerOptions({"sleep", "600000"}));
  ASSERT_TRUE(runner.ok()) << runner.status();
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::optional<wire::HelloFrame>> hello =
        (*runner)->AwaitHello(absl::Milliseconds(5));
    ASSERT_TRUE(hello.ok()) << hello.status();
    EXPECT_FALSE(hello->has_value());
  }
  (*runner)->Kill();
  EXPECT_EQ(HelloOf(**runner).status().code(), absl::StatusCode::kAborted);
}

TEST(RunnerStartTest, AFailingInitializerIsReportedInTheHello) {
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner =
      RunnerProcess::Spawn(RunnerOptions({"fail", "no data"}));
  ASSERT_TRUE(runner.ok()) << runner.status();
  absl::StatusOr<wire::HelloFrame> hello = HelloOf(**runner);
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->initializer_error().code(), Code(absl::StatusCode::kUnknown));
  EXPECT_EQ(hello->initializer_error().message(), "initializer 'fail' failed: no data");
}

TEST(RunnerStartTest, AnInitializerThatCrashesIsADeathBeforeTheHello) {
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner =
      RunnerProcess::Spawn(RunnerOptions({"sample.crash", "abort"}));
  ASSERT_TRUE(runner.ok()) << runner.status();
  absl::StatusOr<wire::HelloFrame> hello = HelloOf(**runner);
  EXPECT_EQ(hello.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(hello.status().message(), HasSubstr("(SIGABRT, Aborted)"));
}

TEST(RunnerStartTest, AMissingTaskLibraryIsAnErrorInTheHello) {
  RunnerProcess::Options options = RunnerOptions();
  options.args.push_back("--task_lib=/nonexistent/libnothing.so");
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner = RunnerProcess::Spawn(options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  absl::StatusOr<wire::HelloFrame> hello = HelloOf(**runner);
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_THAT(hello->error().message(), HasSubstr("libnothing.so"));
}

// A runner whose results come faster than the worker takes them, while the worker writes it a
// batch of tasks far larger than the socket holds: the runner writes all its results before it
// reads a task (tests/flooding_runner.cc). The worker's write takes the results meanwhile, so
// both writes go through, and the results come out of Await in order afterwards.
TEST(RunnerFlowControlTest, AWorkerWritingTasksTakesTheResultsMeanwhile) {
  constexpr int kResults = 256;
  constexpr int kResultBytes = 32 << 10;
  constexpr int kTasks = 256;
  constexpr int kPayloadBytes = 32 << 10;
  absl::StatusOr<std::unique_ptr<RunnerProcess>> runner = RunnerProcess::Spawn(
      {testing::RunfilePath("tests/flooding_runner"),
       {absl::StrCat(kResults), absl::StrCat(kResultBytes), absl::StrCat(kTasks)}});
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE(HelloOf(**runner).ok());
  std::vector<std::string> tasks;
  for (int i = 0; i < kTasks; ++i) {
    tasks.push_back(TaskBytes(1000 + i, "echo", std::string(kPayloadBytes, 't')));
  }
  const std::vector<absl::string_view> frames(tasks.begin(), tasks.end());
  const pid_t pid = (*runner)->pid();
  absl::Notification sent;
  std::thread writer([&] {
    (*runner)->SendTasks(frames);
    sent.Notify();
  });
  const bool in_time = sent.WaitForNotificationWithTimeout(kPatience);
  // A deadlocked write would never end: the runner's death ends it.
  if (!in_time) kill(pid, SIGKILL);
  writer.join();
  ASSERT_TRUE(in_time) << "the worker's write of tasks and the runner's of results deadlocked";
  for (int key = 1; key <= kResults; ++key) {
    const wire::ResultFrame result = ResultOf((*runner)->Await(kPatience));
    ASSERT_EQ(result.task_key(), static_cast<uint64_t>(key));
    ASSERT_EQ(result.result().size(), static_cast<size_t>(kResultBytes));
  }
  const wire::ResultFrame tally = ResultOf((*runner)->Await(kPatience));
  EXPECT_EQ(tally.task_key(), 0u);
  EXPECT_EQ(tally.result(), absl::StrCat(kTasks, " ", kTasks * kPayloadBytes));
}

// Without RunnerProcess: the runner's own end of the bargain when its worker closes the socket.
TEST(RunnerStartTest, TheRunnerExitsWhenTheSocketCloses) {
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, ends[1], 3);
  RunnerProcess::Options options = RunnerOptions();
  std::vector<char*> argv = {options.binary.data()};
  for (std::string& arg : options.args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(ends[1]);
  absl::StatusOr<wire::StreamFrame> hello = wire::FrameReader(ends[0]).Next();
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->tag, wire::Tag::kHello);
  close(ends[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
  EXPECT_TRUE(WIFEXITED(wait_status));
  EXPECT_EQ(WEXITSTATUS(wait_status), 0);
}

// --- wire/stream_frames and wire/task_peek ---

class StreamFramesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, ends_), 0); }
  void TearDown() override {
    for (int fd : ends_) {
      if (fd >= 0) close(fd);
    }
  }
  void CloseWriter() {
    close(ends_[0]);
    ends_[0] = -1;
  }

  int ends_[2] = {-1, -1};
};

TEST_F(StreamFramesTest, FramesArriveWholeWhateverTheirSize) {
  // Far beyond the socket's buffer: written and read in many partial transfers, concurrently.
  const std::string big(200 << 20, 'x');
  std::thread writer([&] {
    EXPECT_EQ(wire::WriteFrame(ends_[0], wire::Tag::kResult, big), absl::OkStatus());
    EXPECT_EQ(wire::WriteFrame(ends_[0], wire::Tag::kProgress, ""), absl::OkStatus());
  });
  wire::FrameReader reader(ends_[1]);
  absl::StatusOr<wire::StreamFrame> first = reader.Next();
  absl::StatusOr<wire::StreamFrame> second = reader.Next();
  writer.join();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->tag, wire::Tag::kResult);
  EXPECT_TRUE(first->bytes == big);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->tag, wire::Tag::kProgress);
  EXPECT_EQ(second->bytes, "");
}

TEST_F(StreamFramesTest, AnEndBetweenFramesIsOutOfRange) {
  CloseWriter();
  wire::FrameReader reader(ends_[1]);
  EXPECT_EQ(reader.Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(StreamFramesTest, ATruncatedFrameIsDataLoss) {
  // A header announcing 100 bytes, followed by 3.
  const uint64_t length = 100;
  char header[9];
  std::memcpy(header, &length, sizeof(length));
  header[8] = static_cast<char>(wire::Tag::kTask);
  ASSERT_EQ(write(ends_[0], header, sizeof(header)), 9);
  ASSERT_EQ(write(ends_[0], "abc", 3), 3);
  CloseWriter();
  wire::FrameReader reader(ends_[1]);
  absl::StatusOr<wire::StreamFrame> frame = reader.Next();
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(frame.status().message(), HasSubstr("after 12 bytes"));
}

TEST_F(StreamFramesTest, ABurstOfFramesIsReadAheadAndHandedOutInOrder) {
  // One write of many small frames (and one large one in the middle): the first read takes the
  // small ones that fit, which are then there without another read.
  std::vector<std::string> bodies;
  for (int i = 0; i < 200; ++i) bodies.push_back(absl::StrCat("frame ", i));
  bodies[100] = std::string(300 << 10, 'L');
  std::vector<absl::string_view> views(bodies.begin(), bodies.end());
  std::thread writer(
      [&] { EXPECT_EQ(wire::WriteFrames(ends_[0], wire::Tag::kTask, views), absl::OkStatus()); });
  wire::FrameReader reader(ends_[1]);
  EXPECT_FALSE(reader.HasFrame());
  for (size_t i = 0; i < bodies.size(); ++i) {
    absl::StatusOr<wire::StreamFrame> frame = reader.Next();
    ASSERT_TRUE(frame.ok()) << i << ": " << frame.status();
    EXPECT_EQ(frame->tag, wire::Tag::kTask);
    EXPECT_TRUE(frame->bytes == bodies[i]) << "frame " << i;
    if (i == 0) {
      EXPECT_TRUE(reader.HasFrame());
    }
  }
  writer.join();
  EXPECT_FALSE(reader.HasFrame());
  CloseWriter();
  EXPECT_EQ(reader.Next().status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(StreamFramesTest, AFrameSplitAcrossWritesIsWholeOnceItsLastByteCame) {
  const std::string body(1000, 'b');
  const uint64_t length = body.size();
  char header[9];
  std::memcpy(header, &length, sizeof(length));
  header[8] = static_cast<char>(wire::Tag::kResult);
  ASSERT_EQ(write(ends_[0], header, 5), 5);
  wire::FrameReader reader(ends_[1]);
  std::thread writer([&] {
    EXPECT_EQ(write(ends_[0], header + 5, 4), 4);
    EXPECT_EQ(write(ends_[0], body.data(), 600), 600);
    EXPECT_EQ(write(ends_[0], body.data() + 600, 400), 400);
  });
  absl::StatusOr<wire::StreamFrame> frame = reader.Next();
  writer.join();
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->bytes, body);
  EXPECT_FALSE(reader.HasFrame());
}

TEST_F(StreamFramesTest, WritingToAClosedPeerIsUnavailableNotSigpipe) {
  close(ends_[1]);
  ends_[1] = -1;
  EXPECT_EQ(wire::WriteFrame(ends_[0], wire::Tag::kTask, "x").code(),
            absl::StatusCode::kUnavailable);
}

TEST(TaskPeekTest, ReadsTheRoutingFieldsAsADecodeWould) {
  wire::TaskFrame task;
  task.set_task_key(0xfedcba9876543210ULL);
  task.set_function("echo");
  task.set_payload(std::string(1 << 20, 'p'));
  task.add_items("i");
  task.mutable_range()->set_count(3);
  task.set_run_timeout_ms(1500);
  absl::StatusOr<wire::TaskHeader> header = wire::PeekTask(task.SerializeAsString());
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->task_key, task.task_key());
  EXPECT_EQ(header->run_timeout_ms, 1500u);
  EXPECT_FALSE(header->gang);

  task.add_gang(0);
  task.add_gang(1);
  header = wire::PeekTask(task.SerializeAsString());
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_TRUE(header->gang);

  EXPECT_EQ(wire::PeekTask("\x0a\xff").status().code(), absl::StatusCode::kInternal);
  absl::StatusOr<wire::TaskHeader> empty = wire::PeekTask("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->task_key, 0u);
}

TEST(TaskPeekTest, ReadsAResultsTaskKeyAsADecodeWould) {
  wire::ResultFrame result;
  result.set_task_key(0x0123456789abcdefULL);
  result.set_result(std::string(1 << 20, 'r'));
  result.set_run_us(7);
  absl::StatusOr<uint64_t> key = wire::PeekResultKey(result.SerializeAsString());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, result.task_key());
  EXPECT_EQ(wire::PeekResultKey("\x12\xff").status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace mpigate::worker
