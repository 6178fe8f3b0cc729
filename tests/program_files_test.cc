// The one finder of mpigate's own files (common/program_files.h): the places it searches, and an
// installed layout (PREFIX/bin next to PREFIX/lib/mpigate) and a flat one on a real file system.
#include "common/program_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DirectoryOfTest, SplitsAtTheLastSlash) {
  EXPECT_EQ(DirectoryOf("/usr/bin/mpigate-server"), "/usr/bin");
  EXPECT_EQ(DirectoryOf("bazel-bin/server/mpigate-server"), "bazel-bin/server");
  EXPECT_EQ(DirectoryOf("/mpigate-server"), "/");
  EXPECT_EQ(DirectoryOf("mpigate-server"), ".");
  EXPECT_EQ(DirectoryOf(""), ".");
}

TEST(ProgramFileCandidatesTest, SearchesBesideThenInstalledThenBazelThenRunfiles) {
  EXPECT_THAT(ProgramFileCandidates("/usr/bin/mpigate-server", "worker", "mpigate-worker"),
              ElementsAre("/usr/bin/mpigate-worker", "/usr/bin/../lib/mpigate/mpigate-worker",
                          "/usr/bin/../worker/mpigate-worker",
                          "/usr/bin/mpigate-server.runfiles/mpigate/worker/mpigate-worker"));
}

// A program found through PATH, or whose /proc/self/exe could not be read: its directory is the
// current one, never the program's name itself taken for a directory.
TEST(ProgramFileCandidatesTest, APathWithNoSlashIsInTheCurrentDirectory) {
  EXPECT_THAT(ProgramFileCandidates("mpigate-worker", "worker", "mpigate-runner"),
              ElementsAre("./mpigate-runner", "./../lib/mpigate/mpigate-runner",
                          "./../worker/mpigate-runner"));
  EXPECT_THAT(ProgramFileCandidates("", "worker", "mpigate-runner"),
              ElementsAre("./mpigate-runner", "./../lib/mpigate/mpigate-runner",
                          "./../worker/mpigate-runner"));
}

class InstalledLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = absl::StrCat(std::getenv("TEST_TMPDIR"), "/layout.XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }

  void MakeDirectory(const std::string& relative) {
    ASSERT_EQ(mkdir(absl::StrCat(root_, "/", relative).c_str(), 0700), 0) << relative;
  }

  void MakeFile(const std::string& relative, mode_t mode) {
    const std::string path = absl::StrCat(root_, "/", relative);
    const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, mode);
    ASSERT_GE(fd, 0) << path;
    close(fd);
  }

  absl::StatusOr<std::string> Find(const std::string& executable, const std::string& package,
                                   const std::string& name, int mode) {
    return FindProgramFileFrom(
        absl::StrCat(root_, "/", executable), package, name,
        [mode](const std::string& path) { return access(path.c_str(), mode) == 0; });
  }

  std::string root_;
};

// The Debian package: user-facing programs in /usr/bin, the rest in /usr/lib/mpigate.
TEST_F(InstalledLayoutTest, ServerInBinFindsItsFilesInLibMpigate) {
  MakeDirectory("bin");
  MakeDirectory("lib");
  MakeDirectory("lib/mpigate");
  MakeFile("bin/mpigate", 0755);
  MakeFile("bin/mpigate-server", 0755);
  MakeFile("lib/mpigate/mpigate-worker", 0755);
  MakeFile("lib/mpigate/mpigate-runner", 0755);
  MakeFile("lib/mpigate/libmpigate_python.so", 0644);

  EXPECT_EQ(Find("bin/mpigate", "server", "mpigate-server", X_OK).value(),
            absl::StrCat(root_, "/bin/mpigate-server"));
  EXPECT_EQ(Find("bin/mpigate-server", "worker", "mpigate-worker", X_OK).value(),
            absl::StrCat(root_, "/bin/../lib/mpigate/mpigate-worker"));
  EXPECT_EQ(Find("bin/mpigate-server", "worker/python", "libmpigate_python.so", R_OK).value(),
            absl::StrCat(root_, "/bin/../lib/mpigate/libmpigate_python.so"));
  // In world mode the server, in bin, runs tasks through the runner itself.
  EXPECT_EQ(Find("bin/mpigate-server", "worker", "mpigate-runner", X_OK).value(),
            absl::StrCat(root_, "/bin/../lib/mpigate/mpigate-runner"));
  // A spawned worker finds its runner beside itself.
  EXPECT_EQ(Find("lib/mpigate/mpigate-worker", "worker", "mpigate-runner", X_OK).value(),
            absl::StrCat(root_, "/lib/mpigate/mpigate-runner"));
}

// A flat directory (e.g. ~/.local/bin): everything side by side, found there first.
TEST_F(InstalledLayoutTest, FlatDirectoryFindsSiblings) {
  MakeDirectory("bin");
  MakeFile("bin/mpigate-server", 0755);
  MakeFile("bin/mpigate-worker", 0755);
  EXPECT_EQ(Find("bin/mpigate-server", "worker", "mpigate-worker", X_OK).value(),
            absl::StrCat(root_, "/bin/mpigate-worker"));
}

TEST_F(InstalledLayoutTest, AFileThatIsNotUsableIsNotFound) {
  MakeDirectory("bin");
  MakeFile("bin/mpigate-server", 0755);
  MakeFile("bin/mpigate-worker", 0644);  // Not executable.
  absl::StatusOr<std::string> found = Find("bin/mpigate-server", "worker", "mpigate-worker", X_OK);
  ASSERT_EQ(found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(found.status().message(),
              HasSubstr(absl::StrCat("cannot find mpigate-worker next to ", root_, "/bin")));
}

// The running test binary finds a file of its build (Bazel's tree, or its runfiles).
TEST(FindProgramFileTest, FindsAFileOfThisBuild) {
  absl::StatusOr<std::string> found = FindProgramFile("worker", "mpigate-runner", X_OK);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(access(found->c_str(), X_OK), 0);
}

// A program the user named wins over the search, and must be executable; a failed search says
// how to name one.
TEST(NamedOrFoundProgramTest, TheNamedOneWinsAndMustBeExecutable) {
  absl::StatusOr<std::string> named =
      NamedOrFoundProgram("/bin/true", "worker binary ", "worker", "mpigate-runner", "hint");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(*named, "/bin/true");
  absl::StatusOr<std::string> not_executable = NamedOrFoundProgram(
      "/nonexistent/mpigate-worker", "worker binary ", "worker", "mpigate-runner", "hint");
  EXPECT_EQ(not_executable.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(not_executable.status().message(),
              HasSubstr("worker binary /nonexistent/mpigate-worker is not executable"));
  absl::StatusOr<std::string> found =
      NamedOrFoundProgram("", "worker binary ", "worker", "mpigate-runner", "hint");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(access(found->c_str(), X_OK), 0);
  absl::StatusOr<std::string> missing =
      NamedOrFoundProgram("", "worker binary ", "worker", "no-such-program", "pass --flag");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("; pass --flag"));
}

}  // namespace
}  // namespace mpigate
