// StartAbortReaper against real processes: a stand-in gateway (a child of the test) starts the
// reaper and ends; a stand-in daemon (the gateway's child) and a stand-in worker either end on
// their own or are killed once the patience is over. The test is a child subreaper, so every one
// of them, the reaper too, is its child to wait for once the gateway has ended.
#include "server/abort_reaper.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Far longer than anything here takes; a wait past it fails the test instead of hanging it.
constexpr absl::Duration kPatience = absl::Seconds(30);

// Whether process `pid` ends (or has ended: a zombie has) within `patience`.
bool EndsWithin(pid_t pid, absl::Duration patience) {
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  pollfd ended = {fd, POLLIN, 0};
  const int ready = poll(&ended, 1, static_cast<int>(absl::ToInt64Milliseconds(patience)));
  close(fd);
  return ready == 1;
}

// The wait status of child `pid` once it ends, or nullopt if it has not within kPatience.
std::optional<int> AwaitEnd(pid_t pid) {
  int status = 0;
  if (!EndsWithin(pid, kPatience) || waitpid(pid, &status, 0) != pid) return std::nullopt;
  return status;
}

bool KilledBySigkill(std::optional<int> status) {
  return status.has_value() && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL;
}

bool EndedWith(std::optional<int> status, int code) {
  return status.has_value() && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
}

// A process that ignores SIGTERM, as a stuck daemon does nothing with it, holds no other
// descriptor open, and waits until `fd` (a pipe's read end) reaches its end: then it ends with
// status 0.
pid_t StartWaiter(int fd) {
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGTERM, SIG_IGN);
    for (int other = STDERR_FILENO + 1; other < 1024; ++other) {
      if (other != fd) close(other);
    }
    char byte;
    while (read(fd, &byte, 1) != 0) {
    }
    _exit(0);
  }
  return pid;
}

// The test's children (it has one thread) not in `known`.
std::vector<pid_t> ChildrenBut(const std::vector<pid_t>& known) {
  std::ifstream file(absl::StrCat("/proc/self/task/", getpid(), "/children"));
  std::vector<pid_t> children;
  for (pid_t pid; file >> pid;) {
    if (std::find(known.begin(), known.end(), pid) == known.end()) children.push_back(pid);
  }
  return children;
}

std::string ReadToEnd(int fd) {
  std::string text;
  char buffer[512];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(n));
  return text;
}

class AbortReaperTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }

  // A case that failed may leave its stand-ins or its reaper: none outlives it.
  void TearDown() override {
    for (const pid_t pid : ChildrenBut({})) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (errors_ >= 0) close(errors_);
  }

  // Starts the stand-in gateway: it starts its daemon (a waiter on `daemon_fd`), sends the
  // daemon's pid through a pipe, points its stderr at another, starts the reaper for `worker`
  // with `patience`, and ends with status 3, every descriptor it inherited still open; or, if it
  // `hangs`, waits for ever instead, as one whose MPI_Abort never returns.
  void StartGateway(pid_t worker, int daemon_fd, absl::Duration patience, bool hangs = false) {
    int pids[2];
    int errors[2];
    ASSERT_EQ(pipe(pids), 0);
    ASSERT_EQ(pipe(errors), 0);
    gateway_ = fork();
    ASSERT_GE(gateway_, 0);
    if (gateway_ == 0) {
      const pid_t daemon = StartWaiter(daemon_fd);
      if (write(pids[1], &daemon, sizeof(daemon)) != sizeof(daemon)) _exit(1);
      dup2(errors[1], STDERR_FILENO);
      if (!StartAbortReaper({worker}, patience).ok()) _exit(1);
      while (hangs) pause();
      _exit(3);
    }
    close(pids[1]);
    close(errors[1]);
    ASSERT_EQ(read(pids[0], &daemon_, sizeof(daemon_)), static_cast<ssize_t>(sizeof(daemon_)));
    close(pids[0]);
    errors_ = errors[0];
  }

  // The reaper, once the gateway has ended: the one child of the test it did not start itself.
  pid_t Reaper(const std::vector<pid_t>& started) {
    const std::vector<pid_t> others = ChildrenBut(started);
    return others.size() == 1 ? others[0] : -1;
  }

  pid_t gateway_ = -1;
  pid_t daemon_ = -1;
  int errors_ = -1;
};

TEST_F(AbortReaperTest, KillsWhatIsStillThereOnceTheGatewayHasEndedAndThePatienceIsOver) {
  int never_ends[2];
  ASSERT_EQ(pipe(never_ends), 0);
  const pid_t worker = StartWaiter(never_ends[0]);
  StartGateway(worker, never_ends[0], absl::Milliseconds(200));
  EXPECT_TRUE(EndedWith(AwaitEnd(gateway_), 3));
  const pid_t reaper = Reaper({worker, daemon_});
  ASSERT_GT(reaper, 0);

  // Both outlive the gateway (the pipe's write end stays open here), so the reaper kills them.
  EXPECT_TRUE(KilledBySigkill(AwaitEnd(worker)));
  EXPECT_TRUE(KilledBySigkill(AwaitEnd(daemon_)));
  // Ended, it holds the pipe of its stderr no more.
  ASSERT_TRUE(EndedWith(AwaitEnd(reaper), 0));
  const std::string said = ReadToEnd(errors_);
  EXPECT_THAT(said, HasSubstr("still there after the abort, killed:"));
  EXPECT_THAT(said, HasSubstr(absl::StrCat(" ", worker)));
  EXPECT_THAT(said, HasSubstr(absl::StrCat(" ", daemon_)));
  close(never_ends[1]);
}

TEST_F(AbortReaperTest, KillsAGatewayThatDoesNotEndWithinThePatienceAndThenTheRest) {
  int never_ends[2];
  ASSERT_EQ(pipe(never_ends), 0);
  const pid_t worker = StartWaiter(never_ends[0]);
  StartGateway(worker, never_ends[0], absl::Milliseconds(200), /*hangs=*/true);

  EXPECT_TRUE(KilledBySigkill(AwaitEnd(gateway_)));
  EXPECT_TRUE(KilledBySigkill(AwaitEnd(worker)));
  EXPECT_TRUE(KilledBySigkill(AwaitEnd(daemon_)));
  const pid_t reaper = Reaper({worker, daemon_});
  ASSERT_GT(reaper, 0);
  ASSERT_TRUE(EndedWith(AwaitEnd(reaper), 0));
  EXPECT_THAT(ReadToEnd(errors_),
              HasSubstr(absl::StrCat("killed: the gateway, pid ", gateway_, "; ")));
  close(never_ends[1]);
}

TEST_F(AbortReaperTest, LeavesAloneWhatEndsWithinThePatienceAndEndsWithIt) {
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  const pid_t worker = StartWaiter(ends[0]);
  // An hour: a reaper that waited for it rather than for the ends would fail AwaitEnd.
  StartGateway(worker, ends[0], absl::Hours(1));
  close(ends[0]);
  EXPECT_TRUE(EndedWith(AwaitEnd(gateway_), 3));
  const pid_t reaper = Reaper({worker, daemon_});
  ASSERT_GT(reaper, 0);

  close(ends[1]);  // the stand-ins end now, after the gateway
  EXPECT_TRUE(EndedWith(AwaitEnd(worker), 0));
  EXPECT_TRUE(EndedWith(AwaitEnd(daemon_), 0));
  ASSERT_TRUE(EndedWith(AwaitEnd(reaper), 0));
  EXPECT_THAT(ReadToEnd(errors_), IsEmpty());
}

TEST_F(AbortReaperTest, HoldsNoneOfTheGatewaysDescriptorsOpen) {
  int never_ends[2];
  ASSERT_EQ(pipe(never_ends), 0);
  const pid_t worker = StartWaiter(never_ends[0]);
  // Inherited by the gateway, which leaves it open, as it leaves its sockets.
  int gateway_socket[2];
  ASSERT_EQ(pipe(gateway_socket), 0);
  StartGateway(worker, never_ends[0], absl::Hours(1));
  close(gateway_socket[1]);
  EXPECT_TRUE(EndedWith(AwaitEnd(gateway_), 3));
  const pid_t reaper = Reaper({worker, daemon_});
  ASSERT_GT(reaper, 0);

  // The reaper still waits (the stand-ins live), yet the gateway's end of the pipe is closed.
  pollfd closed = {gateway_socket[0], POLLIN, 0};
  ASSERT_EQ(poll(&closed, 1, static_cast<int>(absl::ToInt64Milliseconds(kPatience))), 1);
  char byte;
  EXPECT_EQ(read(gateway_socket[0], &byte, 1), 0) << "the reaper holds the gateway's pipe";
  EXPECT_FALSE(EndsWithin(reaper, absl::ZeroDuration()))
      << "the reaper did not wait for the stand-ins";

  close(never_ends[1]);
  EXPECT_TRUE(EndedWith(AwaitEnd(worker), 0));
  EXPECT_TRUE(EndedWith(AwaitEnd(daemon_), 0));
  EXPECT_TRUE(EndedWith(AwaitEnd(reaper), 0));
}

}  // namespace
}  // namespace mpigate::server
