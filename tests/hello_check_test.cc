// What the gateway makes of its workers' hellos, on frames built by the test.
#include "server/hello_check.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mpigate::server {
namespace {

using ::testing::HasSubstr;

wire::HelloFrame Hello(std::vector<std::string> functions) {
  wire::HelloFrame hello;
  hello.set_host("node1");
  for (const std::string& name : functions) hello.add_functions()->set_name(name);
  return hello;
}

TEST(HelloCheckTest, FunctionNamesIsAnOrderedList) {
  EXPECT_EQ(FunctionNames(Hello({"echo", "sleep"})), "echo,sleep");
  EXPECT_EQ(FunctionNames(Hello({})), "");
}

TEST(HelloCheckTest, MatchingHellosServe) {
  const BootVerdict verdict = JudgeFirstHellos({{0, Hello({"echo"})}, {1, Hello({"echo"})}});
  EXPECT_TRUE(verdict.failure.ok());
  EXPECT_EQ(verdict.broken, "");
}

TEST(HelloCheckTest, AWorkerThatFailedToStartFailsThePoolWithItsCode) {
  wire::HelloFrame failed = Hello({});
  failed.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kNotFound));
  failed.mutable_error()->set_message("no such library");
  const BootVerdict verdict = JudgeFirstHellos({{0, Hello({"echo"})}, {1, failed}});
  EXPECT_EQ(verdict.failure.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(verdict.failure.message(), "worker 1 on node1 failed to start: no such library");
}

TEST(HelloCheckTest, DifferentFunctionsAreAFailedPrecondition) {
  const BootVerdict verdict =
      JudgeFirstHellos({{0, Hello({"echo"})}, {1, Hello({"echo", "extra"})}});
  EXPECT_EQ(verdict.failure.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(verdict.failure.message(),
            "workers registered different functions: worker 0 has [echo], worker 1 has "
            "[echo,extra]");
}

TEST(HelloCheckTest, AFailedInitializerBreaksThePoolNamingTheFirst) {
  wire::HelloFrame second = Hello({"echo"});
  second.mutable_initializer_error()->set_message("init 1");
  wire::HelloFrame third = Hello({"echo"});
  third.mutable_initializer_error()->set_message("init 2");
  const BootVerdict verdict = JudgeFirstHellos({{0, Hello({"echo"})}, {1, second}, {2, third}});
  EXPECT_TRUE(verdict.failure.ok());
  EXPECT_EQ(verdict.broken, "worker 1 on node1: init 1");
}

TEST(HelloCheckTest, AReplacementMustStartRunItsInitializerAndRegisterThePoolsFunctions) {
  EXPECT_EQ(ReplacementFailure(Hello({"echo", "sleep"}), "echo,sleep"), "");
  EXPECT_EQ(ReplacementFailure(Hello({"echo"}), "echo,sleep"),
            "it registered other functions: [echo] against [echo,sleep]");
  wire::HelloFrame init = Hello({"echo"});
  init.mutable_initializer_error()->set_message("boom");
  EXPECT_EQ(ReplacementFailure(init, "echo"), "its initializer failed: boom");
  wire::HelloFrame failed = Hello({});
  failed.mutable_error()->set_message("cannot load");
  EXPECT_EQ(ReplacementFailure(failed, "echo"), "cannot load");
}

TEST(HelloCheckTest, FunctionInfosCarryEveryField) {
  wire::HelloFrame hello;
  wire::FunctionEntry& entry = *hello.add_functions();
  entry.set_name("sum");
  entry.set_description("adds");
  entry.set_request_type("a.Req");
  entry.set_response_type("a.Resp");
  entry.set_gang(true);
  const std::vector<v1::FunctionInfo> infos = FunctionInfos(hello);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].name(), "sum");
  EXPECT_EQ(infos[0].description(), "adds");
  EXPECT_EQ(infos[0].request_type(), "a.Req");
  EXPECT_EQ(infos[0].response_type(), "a.Resp");
  EXPECT_TRUE(infos[0].gang());
}

}  // namespace
}  // namespace mpigate::server
