// Shared memory objects (common/shared_memory.h) on the real /dev/shm: names, creation, reading,
// mapping, removal, parking and reuse, the sweeps, and the errors of objects that are gone or of
// another size.
#include "common/shared_memory.h"

#include <dirent.h>
#include <fcntl.h>
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
std::string TestPrefix() {
  static const std::string* const prefix = new std::string(NewSharedObjectPrefix(getpid()).value());
  return *prefix;
}

// Object `name` as another user would make it under a name of ours: holding `bytes`, with mode
// `mode` and, where the test runs as root, owned by `owner`. Returns a descriptor open on it, as
// its maker keeps one to read what lands in it.
int MakeForeignObject(const std::string& name, const std::string& bytes, mode_t mode, uid_t owner) {
  const int fd = shm_open(absl::StrCat("/", name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return -1;
  if (write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) ||
      fchmod(fd, mode) != 0 || (geteuid() == 0 && fchown(fd, owner, owner) != 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

// What the object open on `fd` holds now.
std::string ContentOf(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return "<fstat failed>";
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  if (pread(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) {
    return "<pread failed>";
  }
  return bytes;
}

constexpr uid_t kNobody = 65534;

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

TEST(SharedMemoryTest, APrefixHoldsTheGatewaysPidAndASecretOf128RandomBits) {
  const std::string prefix = NewSharedObjectPrefix(4711).value();
  const std::string again = NewSharedObjectPrefix(4711).value();
  EXPECT_NE(prefix, again);
  ASSERT_THAT(prefix, HasSubstr("-4711-"));
  const std::string secret = prefix.substr(prefix.find("-4711-") + 6);
  EXPECT_EQ(secret.size(), 33u) << prefix;
  EXPECT_EQ(secret.find_first_not_of("0123456789abcdef"), 32u) << prefix;
  EXPECT_EQ(secret.back(), '-');
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
  const std::string other = NewSharedObjectPrefix(0).value();
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
  const std::string dead_prefix = NewSharedObjectPrefix(child).value();
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

TEST(SharedMemoryTest, AnObjectOthersMayOpenIsNeverRead) {
  const std::string name = TestPrefix() + "00000000000000a1";
  const int fd = MakeForeignObject(name, "planted", 0666, geteuid());
  ASSERT_GE(fd, 0);
  const absl::Status read = ReadSharedObject(name, 7).status();
  EXPECT_TRUE(absl::IsDataLoss(read)) << read;
  EXPECT_THAT(read.message(), HasSubstr("not private"));
  EXPECT_THAT(read.message(), HasSubstr("0666"));
  EXPECT_TRUE(absl::IsDataLoss(SharedMapping::Map(name, 7).status()));
  close(fd);
  UnlinkSharedObject(name);
}

TEST(SharedMemoryTest, AnObjectOfAnotherOwnerIsNeverRead) {
  if (geteuid() != 0) GTEST_SKIP() << "making an object another user's owns takes root";
  const std::string name = TestPrefix() + "00000000000000a2";
  const int fd = MakeForeignObject(name, "planted", 0600, kNobody);
  ASSERT_GE(fd, 0);
  const absl::Status read = ReadSharedObject(name, 7).status();
  EXPECT_TRUE(absl::IsDataLoss(read)) << read;
  EXPECT_THAT(read.message(), HasSubstr("owner 65534"));
  close(fd);
  UnlinkSharedObject(name);
}

TEST(SharedMemoryTest, ParkedNamesSomeoneElseMadeAreNeverWrittenInto) {
  const std::string prefix = NewSharedObjectPrefix(getpid()).value();
  // Every slot of the smallest size class, made as another user would: open to all, or (as
  // root) owned by nobody.
  std::vector<int> planted;
  for (int slot = 0; slot < 4; ++slot) {
    const int fd =
        MakeForeignObject(absl::StrCat(prefix, "parked-16-", slot), "planted",
                          slot % 2 == 0 ? 0666 : 0600, slot % 2 == 0 ? geteuid() : kNobody);
    ASSERT_GE(fd, 0);
    planted.push_back(fd);
  }
  const std::string bytes(1000, 'r');
  absl::StatusOr<std::string> name = CreateSharedObject(prefix, bytes);
  ASSERT_TRUE(name.ok()) << name.status();
  struct stat st;
  ASSERT_EQ(stat(absl::StrCat("/dev/shm/", *name).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadSharedObject(*name, bytes.size()).value_or(""), bytes);
  for (const int fd : planted) {
    struct stat planted_st;
    ASSERT_EQ(fstat(fd, &planted_st), 0);
    EXPECT_NE(planted_st.st_ino, st.st_ino);
    EXPECT_EQ(ContentOf(fd), "planted");
    close(fd);
  }
  // Released, ours is parked in a slot the planted ones no longer hold.
  ReleaseSharedObject(*name);
  EXPECT_EQ(Parked(prefix), 1);
  EXPECT_EQ(UnlinkSharedObjects(prefix), 1);
}

TEST(SharedMemoryTest, AnObjectThatIsNotOursIsRemovedNotParkedWhenReleased) {
  const std::string prefix = NewSharedObjectPrefix(getpid()).value();
  const std::string name = prefix + "00000000000000a3";
  const int fd = MakeForeignObject(name, "planted", 0666, geteuid());
  ASSERT_GE(fd, 0);
  ReleaseSharedObject(name);
  EXPECT_FALSE(Exists(name));
  EXPECT_EQ(Parked(prefix), 0);
  EXPECT_EQ(ContentOf(fd), "planted");
  close(fd);
}

TEST(SharedMemoryTest, SweepsLeaveOtherUsersObjectsAlone) {
  if (geteuid() != 0) GTEST_SKIP() << "making an object another user's owns takes root";
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string dead_prefix = NewSharedObjectPrefix(child).value();
  const std::string theirs = dead_prefix + "00000000000000a4";
  const int fd = MakeForeignObject(theirs, "theirs", 0600, kNobody);
  ASSERT_GE(fd, 0);
  close(fd);
  UnlinkOrphanedSharedObjects();
  EXPECT_TRUE(Exists(theirs));
  EXPECT_EQ(UnlinkSharedObjects(dead_prefix), 0);
  EXPECT_TRUE(Exists(theirs));
  UnlinkSharedObject(theirs);
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
