// Unit tests of the worker options' command-line form and of finding task libraries. No MPI calls.
#include "worker/worker_options.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/task_library.h"

namespace mpigate::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(WorkerOptionsTest, ArgumentsCarryEveryOptionAndBack) {
  WorkerOptions options;
  options.initializer = {"setenv", "A=b=c"};
  options.env = {"X=1", "Y=with spaces, and commas"};
  options.wdir = "/scratch/run";
  options.task_libs = {"libone.so", "/abs/libtwo.so"};
  options.task_lib_path = {"/opt/a", "/opt/b"};
  options.allow_exec = true;

  absl::StatusOr<WorkerOptions> parsed = ParseArgs(ToArgs(options));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->initializer.function, "setenv");
  EXPECT_EQ(parsed->initializer.input, "A=b=c");
  EXPECT_THAT(parsed->env, ElementsAre("X=1", "Y=with spaces, and commas"));
  EXPECT_EQ(parsed->wdir, "/scratch/run");
  EXPECT_THAT(parsed->task_libs, ElementsAre("libone.so", "/abs/libtwo.so"));
  EXPECT_THAT(parsed->task_lib_path, ElementsAre("/opt/a", "/opt/b"));
  EXPECT_TRUE(parsed->allow_exec);
}

TEST(WorkerOptionsTest, NoOptionsMeansNoArguments) {
  EXPECT_TRUE(ToArgs(WorkerOptions()).empty());
  absl::StatusOr<WorkerOptions> parsed = ParseArgs({});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->initializer.function.empty());
  EXPECT_FALSE(parsed->allow_exec);
}

TEST(WorkerOptionsTest, UnknownArgumentsAndMalformedEnvironmentAreRejected) {
  EXPECT_EQ(ParseArgs({"--bogus=1"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseArgs({"--env=NOVALUE"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateEnv({"=value"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateEnv({"EMPTY="}).ok());
}

TEST(TaskLibraryTest, APathIsTakenAsItIsAndANameIsSearchedFor) {
  EXPECT_EQ(*FindTaskLibrary("./lib/x.so", {"/nowhere"}), "./lib/x.so");
  // /lib/x86_64-linux-gnu holds libc on Debian; any readable file will do.
  absl::StatusOr<std::string> found =
      FindTaskLibrary("libc.so.6", {"/nowhere", "/lib/x86_64-linux-gnu"});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, "/lib/x86_64-linux-gnu/libc.so.6");
  absl::StatusOr<std::string> missing = FindTaskLibrary("libmissing.so", {"/a", "/b"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("[/a:/b]"));
}

TEST(TaskLibraryTest, ALibraryWithoutTheEntryPointIsRefused) {
  FunctionRegistry registry;
  const absl::Status status = LoadTaskLibraries({"libc.so.6"}, {"/lib/x86_64-linux-gnu"}, registry);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("has no mpigate_register_tasks"));
}

}  // namespace
}  // namespace mpigate::worker
