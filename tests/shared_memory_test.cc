// Shared memory objects (common/shared_memory.h) on the real /dev/shm: names, creation, reading,
// mapping, removal, parking and reuse, the sweeps, and the errors of objects that are gone or of
// another size.
#include "common/shared_memory.h"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

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

// The objects in /dev/shm whose names start with `start`.
int CountStartingWith(const std::string& start) {
  DIR* directory = opendir("/dev/shm");
  if (directory == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = readdir(directory)) {
    if (absl::StartsWith(entry->d_name, start)) ++count;
  }
  closedir(directory);
  return count;
}

int Parked(const std::string& prefix) { return CountStartingWith(prefix + "parked-"); }

ino_t InodeOf(const std::string& name) {
  struct stat st;
  return stat(absl::StrCat("/dev/shm/", name).c_str(), &st) == 0 ? st.st_ino : 0;
}

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

TEST(SharedMemoryTest, AReleasedObjectIsParkedAndTheNextOneOfItsSizeClassReusesIt) {
  const std::string prefix = TestPrefix();
  const std::string first_bytes(700 << 10, 'a');
  absl::StatusOr<std::string> first = CreateSharedObject(prefix, first_bytes);
  ASSERT_TRUE(first.ok()) << first.status();
  const ino_t inode = InodeOf(*first);
  ReleaseSharedObject(*first);
  EXPECT_FALSE(Exists(*first));
  EXPECT_EQ(Parked(prefix), 1);

  // Larger than the first, in the same class (up to 1 MiB): the same pages, grown, and a new name.
  const std::string second_bytes = std::string(1 << 20, 'b');
  absl::StatusOr<std::string> second = CreateSharedObject(prefix, second_bytes);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(*second, *first);
  EXPECT_TRUE(IsSharedObjectName(*second, prefix));
  EXPECT_EQ(InodeOf(*second), inode);
  EXPECT_EQ(Parked(prefix), 0);
  EXPECT_EQ(ReadSharedObject(*second, second_bytes.size()).value_or(""), second_bytes);
  ReleaseSharedObject(*second);

  // Smaller: cut to its size, nothing of the last one's bytes past it.
  const std::string third_bytes(600 << 10, 'c');
  absl::StatusOr<std::string> third = CreateSharedObject(prefix, third_bytes);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(InodeOf(*third), inode);
  EXPECT_EQ(ReadSharedObject(*third, third_bytes.size()).value_or(""), third_bytes);
  struct stat st;
  ASSERT_EQ(stat(absl::StrCat("/dev/shm/", *third).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Another class does not take it.
  absl::StatusOr<std::string> small = CreateSharedObject(prefix, "small");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_NE(InodeOf(*small), inode);
  UnlinkSharedObject(*small);
  UnlinkSharedObject(*third);
}

TEST(SharedMemoryTest, ParkingHoldsAFewObjectsPerClassAndNoLargeOnes) {
  const std::string prefix = TestPrefix();
  std::vector<std::string> names;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<std::string> name = CreateSharedObject(prefix, std::string(1 << 20, 'm'));
    ASSERT_TRUE(name.ok()) << name.status();
    names.push_back(*name);
  }
  for (const std::string& name : names) ReleaseSharedObject(name);
  // Four of the 1 MiB class are parked, the other two removed.
  EXPECT_EQ(Parked(prefix), 4);
  EXPECT_EQ(CountStartingWith(prefix), 4);

  // 8 MiB is parked, one at a time; anything larger is removed.
  absl::StatusOr<std::string> largest = CreateSharedObject(prefix, std::string(8 << 20, 'l'));
  absl::StatusOr<std::string> too_large =
      CreateSharedObject(prefix, std::string((8 << 20) + 1, 't'));
  ASSERT_TRUE(largest.ok() && too_large.ok());
  ReleaseSharedObject(*largest);
  ReleaseSharedObject(*too_large);
  EXPECT_FALSE(Exists(*too_large));
  EXPECT_EQ(Parked(prefix), 5);

  // Releasing one that is gone already is no error.
  ReleaseSharedObject(*too_large);
  // The sweep of a prefix takes parked objects too.
  EXPECT_EQ(UnlinkSharedObjects(prefix), 5);
  EXPECT_EQ(CountStartingWith(prefix), 0);
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
  const std::string dead_prefix = SharedObjectPrefix(child);
  absl::StatusOr<std::string> orphan = CreateSharedObject(dead_prefix, "orphan");
  absl::StatusOr<std::string> parked = CreateSharedObject(dead_prefix, "parked");
  absl::StatusOr<std::string> alive = CreateSharedObject(TestPrefix(), "alive");
  ASSERT_TRUE(orphan.ok() && parked.ok() && alive.ok());
  ReleaseSharedObject(*parked);
  ASSERT_EQ(Parked(dead_prefix), 1);
  // Any gateway starting meanwhile (another test's) sweeps too: what counts is that it is gone.
  UnlinkOrphanedSharedObjects();
  EXPECT_FALSE(Exists(*orphan));
  EXPECT_EQ(CountStartingWith(dead_prefix), 0);
  EXPECT_TRUE(Exists(*alive));
  UnlinkSharedObject(*alive);
}

TEST(SharedMemoryTest, TheReaperReleasesWhatItIsGivenBeforeItIsDestroyed) {
  absl::StatusOr<std::string> name = CreateSharedObject(TestPrefix(), "parked");
  absl::StatusOr<std::string> large = CreateSharedObject(TestPrefix(), std::string(9 << 20, 'x'));
  ASSERT_TRUE(name.ok() && large.ok());
  {
    SharedObjectReaper reaper;
    reaper.Release(*name);
    reaper.Release(*large);
  }
  EXPECT_FALSE(Exists(*name));
  EXPECT_FALSE(Exists(*large));
  EXPECT_EQ(Parked(TestPrefix()), 1);
  EXPECT_EQ(UnlinkSharedObjects(TestPrefix()), 1);
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
