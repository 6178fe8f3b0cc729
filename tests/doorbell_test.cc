// The doorbell that wakes an idle worker (wire/doorbell.h): real sockets, no MPI.
#include "wire/doorbell.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::wire {
namespace {

using ::testing::HasSubstr;

std::string DirectoryOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

sockaddr_un AddressOf(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  return address;
}

// Runs `as_nobody` in a child process that has become user nobody; the child's exit status is what
// `as_nobody` returns (255 if it could not become nobody). `before_dropping` runs first, as the
// caller's user.
template <typename BeforeDropping, typename AsNobody>
int InChildAsNobody(BeforeDropping before_dropping, AsNobody as_nobody) {
  const passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) return 254;
  const uid_t uid = nobody->pw_uid;
  const gid_t gid = nobody->pw_gid;
  const pid_t child = fork();
  if (child == 0) {
    const int state = before_dropping();
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(255);
    }
    _exit(as_nobody(state));
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status)) return 253;
  return WEXITSTATUS(status);
}

TEST(DoorbellTest, ItsAddressIsASocketInADirectoryOnlyItsUserMayEnter) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  EXPECT_THAT(doorbell->address(), ::testing::StartsWith("/tmp/mpigate-doorbell-"));
  struct stat directory;
  ASSERT_EQ(lstat(DirectoryOf(doorbell->address()).c_str(), &directory), 0);
  EXPECT_TRUE(S_ISDIR(directory.st_mode));
  EXPECT_EQ(directory.st_mode & 0777, 0700u);
  EXPECT_EQ(directory.st_uid, geteuid());
  struct stat socket_file;
  ASSERT_EQ(lstat(doorbell->address().c_str(), &socket_file), 0);
  EXPECT_TRUE(S_ISSOCK(socket_file.st_mode));
}

TEST(DoorbellTest, ClosingItRemovesItsDirectory) {
  std::string address;
  {
    absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
    ASSERT_TRUE(doorbell.ok()) << doorbell.status();
    Doorbell moved = *std::move(doorbell);
    address = moved.address();
  }
  EXPECT_NE(access(DirectoryOf(address).c_str(), F_OK), 0);
}

TEST(DoorbellTest, TheNextDoorbellRemovesTheDirectoryOfAKilledOne) {
  // What a killed worker leaves: its directory and socket file, with no socket bound to it.
  char directory[] = "/tmp/mpigate-doorbell-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string path = absl::StrCat(directory, "/bell");
  const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  const sockaddr_un address = AddressOf(path);
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  close(fd);
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  EXPECT_NE(access(directory, F_OK), 0);
  // A live one is left alone.
  absl::StatusOr<Doorbell> second = Doorbell::Open();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(access(doorbell->address().c_str(), F_OK), 0);
}

TEST(DoorbellTest, AnotherUserCannotReachIt) {
  if (geteuid() != 0) GTEST_SKIP() << "becoming another user (nobody) takes root";
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  const sockaddr_un address = AddressOf(doorbell->address());
  // The child's exit status: the errno of its connect and of its send, 0 where one worked.
  const int error =
      InChildAsNobody([] { return 0; },
                      [&address](int) {
                        const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
                        const char ring = 1;
                        if (sendto(fd, &ring, 1, 0, reinterpret_cast<const sockaddr*>(&address),
                                   sizeof(address)) == 1) {
                          return 0;
                        }
                        return errno;
                      });
  EXPECT_EQ(error, EACCES) << std::strerror(error);
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration()));
}

TEST(DoorbellTest, ARingSentAsAnotherUserIsNotARing) {
  if (geteuid() != 0) GTEST_SKIP() << "becoming another user (nobody) takes root";
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  const sockaddr_un address = AddressOf(doorbell->address());
  // Connected while still root, the socket reaches the doorbell; its datagrams then carry the
  // credentials of nobody, who sends them.
  const int sent = InChildAsNobody(
      [&address] {
        const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
        return fd;
      },
      [](int fd) {
        const char ring = 1;
        int count = 0;
        for (int i = 0; i < 10; ++i) count += send(fd, &ring, 1, 0) == 1 ? 1 : 0;
        return count;
      });
  ASSERT_EQ(sent, 10);
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration()));
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(ringer.ok());
  ASSERT_TRUE(ringer->Ring(doorbell->address()).ok());
  EXPECT_TRUE(doorbell->Wait(absl::ZeroDuration()));
}

TEST(DoorbellTest, AWaitWithoutARingTimesOut) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok()) << doorbell.status();
  EXPECT_FALSE(doorbell->Wait(absl::Milliseconds(1)));
}

TEST(DoorbellTest, ARingEndsTheNextWaitAndIsTakenByIt) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  ASSERT_TRUE(ringer->Ring(doorbell->address()).ok());
  EXPECT_TRUE(doorbell->Wait(absl::Minutes(1)));
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration())) << "the ring was taken";
}

TEST(DoorbellTest, ARingFromAnotherThreadEndsAWait) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  std::thread gateway([&] { EXPECT_TRUE(ringer->Ring(doorbell->address()).ok()); });
  // Bounded by the test's own timeout should the ring never come.
  EXPECT_TRUE(doorbell->Wait(absl::InfiniteDuration()));
  gateway.join();
}

TEST(DoorbellTest, AFullDoorbellCountsAsRungAndOneWaitTakesEveryRing) {
  absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(doorbell.ok() && ringer.ok());
  // Far more than a socket buffer holds.
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(ringer->Ring(doorbell->address()).ok()) << i;
  EXPECT_TRUE(doorbell->Wait(absl::ZeroDuration()));
  EXPECT_FALSE(doorbell->Wait(absl::ZeroDuration()));
}

TEST(DoorbellTest, ARungDoorbellRingsBackTheOneThatRangItLast) {
  absl::StatusOr<Doorbell> worker = Doorbell::Open();
  absl::StatusOr<Doorbell> first = Doorbell::Open();
  absl::StatusOr<Doorbell> last = Doorbell::Open();
  ASSERT_TRUE(worker.ok() && first.ok() && last.ok());
  ASSERT_TRUE(first->Ring(worker->address()).ok());
  ASSERT_TRUE(last->Ring(worker->address()).ok());
  ASSERT_TRUE(worker->Wait(absl::Minutes(1)));
  worker->RingBack();
  EXPECT_TRUE(last->Wait(absl::Minutes(1)));
  EXPECT_FALSE(first->Wait(absl::ZeroDuration()));
  // Until another ring comes, each ring back goes to the same doorbell.
  worker->RingBack();
  EXPECT_TRUE(last->Wait(absl::Minutes(1)));
}

TEST(DoorbellTest, RingingADoorbellThatIsNotHereFails) {
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(ringer.ok());
  const absl::Status status = ringer->Ring("mpigate-doorbell-of-nobody");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("mpigate-doorbell-of-nobody"));
}

TEST(DoorbellTest, AClosedDoorbellCannotBeRung) {
  absl::StatusOr<Doorbell> ringer = Doorbell::Open();
  ASSERT_TRUE(ringer.ok());
  std::string address;
  {
    absl::StatusOr<Doorbell> doorbell = Doorbell::Open();
    ASSERT_TRUE(doorbell.ok());
    address = doorbell->address();
  }
  EXPECT_FALSE(ringer->Ring(address).ok());
}

}  // namespace
}  // namespace mpigate::wire
