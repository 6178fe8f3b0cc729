// Shared memory objects (common/shared_memory.h) on the real /dev/shm: names, creation, reading,
// mapping, removal, the sweeps, and the errors of objects that are gone or of another size.
#include "common/shared_memory.h"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;

bool Exists(const std::string& name) {
  return access(absl::StrCat("/dev/shm/", name).c_str(), F_OK) == 0;
}

// A prefix no running gateway uses: this test's own pid, which is no gateway.
std::string TestPrefix() { return SharedObjectPrefix(getpid()); }

TEST(SharedMemoryTest, NamesAreThePrefixAndSixteenLowercaseHexDigits) {
  const std::string prefix = TestPrefix();
  EXPECT_TRUE(IsSharedObjectName(prefix + "0123456789abcdef", prefix));
  EXPECT_FALSE(IsSharedObjectName(prefix + "0123456789ABCDEF", prefix));
  EXPECT_FALSE(IsSharedObjectName(prefix + "0123456789abcde", prefix));
  EXPECT_FALSE(IsSharedObjectName(prefix + "0123456789abcdef0", prefix));
  EXPECT_FALSE(IsSharedObjectName(prefix + "../../etc/passwd", prefix));
  EXPECT_FALSE(IsSharedObjectName("mpigate-1-2-0123456789abcdef", prefix));
  EXPECT_THAT(prefix, HasSubstr(absl::StrCat("-", getpid(), "-")));
}

TEST(SharedMemoryTest, AnObjectHoldsWhatWasWrittenUntilItIsRemoved) {
  const std::string bytes = std::string(3 << 20, 'x') + "end";
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), bytes);
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_TRUE(IsSharedObjectName(*name, TestPrefix()));
  EXPECT_TRUE(Exists(*name));

  absl::StatusOr<std::string> read = ReadSharedObject(*name, bytes.size());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
  {
    absl::StatusOr<SharedMapping> mapping = SharedMapping::Map(*name, bytes.size());
    ASSERT_TRUE(mapping.ok()) << mapping.status();
    UnlinkSharedObject(*name);
    EXPECT_FALSE(Exists(*name));
    // A mapping outlives the name.
    EXPECT_EQ(mapping->bytes(), bytes);
    SharedMapping moved = *std::move(mapping);
    EXPECT_EQ(moved.bytes().size(), bytes.size());
  }
  EXPECT_TRUE(absl::IsDataLoss(ReadSharedObject(*name, bytes.size()).status()));
  UnlinkSharedObject(*name);  // Gone already: no error, nothing happens.
}

TEST(SharedMemoryTest, AnEmptyObjectMapsToNothing) {
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), "");
  ASSERT_TRUE(name.ok()) << name.status();
  absl::StatusOr<std::string> read = ReadSharedObject(*name, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "");
  UnlinkSharedObject(*name);
}

TEST(SharedMemoryTest, AnObjectOfAnotherSizeThanSaidIsDataLoss) {
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), "twelve bytes");
  ASSERT_TRUE(name.ok()) << name.status();
  const absl::Status status = ReadSharedObject(*name, 13).status();
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("holds 12 bytes, not 13"));
  UnlinkSharedObject(*name);
}

TEST(SharedMemoryTest, ObjectsAreTheOwnersAlone) {
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), "private");
  ASSERT_TRUE(name.ok()) << name.status();
  struct stat st;
  ASSERT_EQ(stat(absl::StrCat("/dev/shm/", *name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  UnlinkSharedObject(*name);
}

TEST(SharedMemoryTest, UnlinkSharedObjectsRemovesThoseOfOnePrefixOnly) {
  const std::string mine = TestPrefix();
  // The prefix of a gateway that cannot exist (pid 0 is never a process of ours).
  const std::string other = SharedObjectPrefix(0);
  absl::StatusOr<std::string> a = CreateSharedObject(mine, "a");
  absl::StatusOr<std::string> b = CreateSharedObject(mine, "b");
  absl::StatusOr<std::string> c = CreateSharedObject(other, "c");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(UnlinkSharedObjects(mine), 2);
  EXPECT_FALSE(Exists(*a));
  EXPECT_FALSE(Exists(*b));
  EXPECT_TRUE(Exists(*c));
  UnlinkSharedObject(*c);
}

TEST(SharedMemoryTest, TheOrphanSweepRemovesObjectsOfGatewaysThatAreGoneAndNoOthers) {
  // A child that has exited and been reaped stands for a gateway that was killed.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  absl::StatusOr<std::string> orphan = CreateSharedObject(SharedObjectPrefix(child), "orphan");
  absl::StatusOr<std::string> alive = CreateSharedObject(TestPrefix(), "alive");
  ASSERT_TRUE(orphan.ok() && alive.ok());
  // Any gateway starting meanwhile (another test's) sweeps too: what counts is that it is gone.
  UnlinkOrphanedSharedObjects();
  EXPECT_FALSE(Exists(*orphan));
  EXPECT_TRUE(Exists(*alive));
  UnlinkSharedObject(*alive);
}

TEST(SharedMemoryTest, TheReaperRemovesWhatItIsGivenBeforeItIsDestroyed) {
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), "doomed");
  ASSERT_TRUE(name.ok());
  {
    SharedObjectReaper reaper;
    reaper.Remove(*name);
  }
  EXPECT_FALSE(Exists(*name));
}

TEST(SharedMemoryTest, ADomainNamesTheBootTheFileSystemAndTheUser) {
  const std::string domain = SharedMemoryDomain();
  ASSERT_FALSE(domain.empty());
  EXPECT_TRUE(absl::EndsWith(domain, absl::StrCat("/", geteuid()))) << domain;
  EXPECT_EQ(SharedMemoryDomain(), domain);
  setenv("MPIGATE_SHARED_MEMORY", "off", 1);
  EXPECT_EQ(SharedMemoryDomain(), "");
  unsetenv("MPIGATE_SHARED_MEMORY");
}

TEST(SharedMemoryTest, ALargeCopyIsACopy) {
  std::string bytes(5 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  EXPECT_EQ(LargeCopy(bytes), bytes);
  EXPECT_EQ(LargeCopy("small"), "small");
  EXPECT_EQ(LargeCopy(""), "");
}

}  // namespace
}  // namespace mpigate
