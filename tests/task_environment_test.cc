// TaskEnvironment unit tests: each task gets the pool's environment plus its executor's
// variables, whatever the task before it did to the process's environment.
#include "worker/task_environment.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace mpigate::worker {
namespace {

google::protobuf::RepeatedPtrField<std::string> Variables(std::initializer_list<const char*> list) {
  google::protobuf::RepeatedPtrField<std::string> variables;
  for (const char* variable : list) variables.Add(variable);
  return variables;
}

std::string Get(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "<unset>" : value;
}

class TaskEnvironmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("POOL_VAR", "pool", 1);
    unsetenv("TASK_VAR");
    unsetenv("EXECUTOR_VAR");
  }
};

TEST_F(TaskEnvironmentTest, ATaskThatChangesNothingCostsNoReinstall) {
  TaskEnvironment environment;
  EXPECT_FALSE(environment.Apply(Variables({})));
  EXPECT_FALSE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("POOL_VAR"), "pool");
}

TEST_F(TaskEnvironmentTest, WhatATaskSetsOrUnsetsIsUndoneForTheNext) {
  TaskEnvironment environment;
  EXPECT_FALSE(environment.Apply(Variables({})));
  // A task adds one variable, replaces another and removes a third.
  setenv("TASK_VAR", "leaked", 1);
  EXPECT_TRUE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("TASK_VAR"), "<unset>");
  setenv("POOL_VAR", "changed", 1);
  EXPECT_TRUE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("POOL_VAR"), "pool");
  unsetenv("POOL_VAR");
  EXPECT_TRUE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("POOL_VAR"), "pool");
  clearenv();
  EXPECT_TRUE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("POOL_VAR"), "pool");
  EXPECT_FALSE(environment.Apply(Variables({})));
}

TEST_F(TaskEnvironmentTest, AnExecutorsVariablesAreItsTasksAlone) {
  TaskEnvironment environment;
  EXPECT_TRUE(environment.Apply(Variables({"EXECUTOR_VAR=1", "POOL_VAR=own"})));
  EXPECT_EQ(Get("EXECUTOR_VAR"), "1");
  EXPECT_EQ(Get("POOL_VAR"), "own");
  // The same executor's next task: nothing to do.
  EXPECT_FALSE(environment.Apply(Variables({"EXECUTOR_VAR=1", "POOL_VAR=own"})));
  // Another executor's task sees none of them.
  EXPECT_TRUE(environment.Apply(Variables({})));
  EXPECT_EQ(Get("EXECUTOR_VAR"), "<unset>");
  EXPECT_EQ(Get("POOL_VAR"), "pool");
  EXPECT_TRUE(environment.Apply(Variables({"EXECUTOR_VAR=2"})));
  EXPECT_EQ(Get("EXECUTOR_VAR"), "2");
}

}  // namespace
}  // namespace mpigate::worker
