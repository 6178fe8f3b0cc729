// The MPI library a build links, end to end: `mpigate-server --mpi_launcher` names it and its
// launcher as the build chose them (//bazel:mpi, //bazel:mpi_launcher), and a server started
// directly, in spawn mode, serves on Open MPI and, on MPICH (Debian's 4.0 cannot spawn), stops at
// once with FAILED_PRECONDITION pointing at world mode instead of hanging.
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server_process.h"

namespace mpigate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr bool kOpenMpi = std::string_view(MPIGATE_MPI_FAMILY) == "openmpi";

std::string Server() { return testing::RunfilePath("server/mpigate-server"); }

TEST(MpiLibraryTest, TheServerNamesTheLibraryItLinksAndItsLauncher) {
  absl::StatusOr<testing::CommandResult> printed =
      testing::RunCommand(absl::StrCat("env -u MPIGATE_MPIEXEC ", Server(), " --mpi_launcher"));
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(printed->exit_code, 0) << printed->output;
  EXPECT_EQ(printed->output, absl::StrCat(MPIGATE_MPI_FAMILY, " ", MPIGATE_MPIEXEC, "\n"));
  // By name, never Debian's `mpiexec` alternative.
  EXPECT_THAT(std::string(MPIGATE_MPIEXEC),
              HasSubstr(kOpenMpi ? "mpiexec.openmpi" : "mpiexec.mpich"));
}

TEST(MpiLibraryTest, MpigateMpiexecNamesAnotherLauncher) {
  absl::StatusOr<testing::CommandResult> printed = testing::RunCommand(
      absl::StrCat("MPIGATE_MPIEXEC=/opt/site/bin/mpiexec ", Server(), " --mpi_launcher"));
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(printed->output, absl::StrCat(MPIGATE_MPI_FAMILY, " /opt/site/bin/mpiexec\n"));
}

TEST(MpiLibraryTest, SpawnModeServesOnOpenMpiAndSaysAtOnceThatMpichCannotSpawn) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/direct");
  const std::string flags =
      absl::StrCat(" --workers=1 --listen=unix:", dir, ".sock --endpoint-file=", dir,
                   ".endpoint --worker-binary=", testing::RunfilePath("worker/mpigate-worker"));
  if (kOpenMpi) {
    testing::ServerProcess server;
    ASSERT_TRUE(server.Start({.workers = 1}).ok());
    absl::StatusOr<testing::ServerExit> exit = server.Stop();
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
    return;
  }
  // Started directly: a singleton. Hydra 4.0 cannot serve one, so nothing may ask for the
  // universe size before the check; a hang fails this test by its time limit.
  absl::StatusOr<testing::CommandResult> started = testing::RunCommand(Server() + flags);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->exit_code, 1) << started->output;
  EXPECT_THAT(started->output, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(started->output, HasSubstr("cannot start processes"));
  EXPECT_THAT(started->output, HasSubstr("mpiexec -n N+1 mpigate-server --world"));
  EXPECT_THAT(started->output, Not(HasSubstr("ready")));
}

}  // namespace
}  // namespace mpigate
