// TaskEnvironment: gives each task a task runner runs the pool's environment plus its executor's
// own variables (v1.OpenSession.env, carried in wire.TaskFrame.env), whatever an earlier task of
// any executor did to the process's environment (setenv, putenv, unsetenv, clearenv).
//
// The pool's environment is the process's as it is when the TaskEnvironment is made: in the task
// runner, after its start and the pool's initializer. From then on the process's environment is
// an array this class owns (POSIX lets a program set `environ`). Before each task, Apply() checks
// whether `environ` is still the array it last installed, entry for entry, and whether the task
// has the same variables as the one before: if so (the common case) it does nothing, at the cost
// of comparing a few dozen pointers; otherwise it installs a fresh array. A task that writes into
// the bytes of a variable's value in place (through getenv's pointer) is not seen.
//
// Thread-safety: not thread-safe, and neither is the environment: call it from the thread that
// runs tasks, with no task running.
#ifndef MPIGATE_WORKER_TASK_ENVIRONMENT_H_
#define MPIGATE_WORKER_TASK_ENVIRONMENT_H_

#include <string>
#include <vector>

#include "google/protobuf/repeated_ptr_field.h"

namespace mpigate::worker {

class TaskEnvironment {
 public:
  // Takes the process's environment as it is now as the pool's, and installs a copy of it.
  TaskEnvironment();
  // Leaves the process a copy of its environment as it is then, in memory of the C library's.
  ~TaskEnvironment();
  TaskEnvironment(const TaskEnvironment&) = delete;
  TaskEnvironment& operator=(const TaskEnvironment&) = delete;

  // Makes the process's environment the pool's plus `variables` ("NAME=VALUE" each, valid names,
  // as the gateway checked them; they replace pool variables of the same name) for the next task.
  // True if it had to install it anew.
  bool Apply(const google::protobuf::RepeatedPtrField<std::string>& variables);

 private:
  void Install(const google::protobuf::RepeatedPtrField<std::string>& variables);

  // The pool's environment, "NAME=VALUE" each.
  const std::vector<std::string> pool_;
  // The executor variables installed last, "NAME=VALUE" each; the array points into them.
  std::vector<std::string> variables_;
  // The array installed as `environ` (null-terminated), which task code may change in place, and
  // a copy of it as installed, to tell whether it did.
  std::vector<char*> installed_;
  std::vector<char*> expected_;
};

}  // namespace mpigate::worker

#endif  // MPIGATE_WORKER_TASK_ENVIRONMENT_H_
