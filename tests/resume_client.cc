// resume_client: a client process for tests/reconnect_test.cc to kill. It connects to the service
// at argv[1], prints "token <hex>" (its session's resume token), submits argv[2] tasks (see
// ExpectedResult in reconnect_test.cc: task i is echo "task i", every 50th a 100 ms sleep), and
// prints "done <id>" for each outcome it has read, from the task's done callback: that runs before
// the executor acknowledges the outcome, so every outcome the service forgets has been recorded.
// Once the service has every task it prints "submitted", then waits to be killed.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/executor.h"

namespace {

// One line with one write(2): stdout's buffer would lose lines when the process is killed.
void PrintLine(const std::string& line) {
  const std::string text = line + "\n";
  if (write(STDOUT_FILENO, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    std::abort();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: resume_client ENDPOINT TASKS\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<mpigate::Executor>> executor =
      mpigate::Executor::Connect({.endpoint = argv[1], .client_name = "resume_client"});
  if (!executor.ok()) {
    std::fprintf(stderr, "resume_client: %s\n", executor.status().ToString().c_str());
    return 1;
  }
  PrintLine(absl::StrCat("token ", absl::BytesToHexString((*executor)->resume_token())));
  const int tasks = std::atoi(argv[2]);
  for (int i = 1; i <= tasks; ++i) {
    mpigate::Future future = i % 50 == 0 ? (*executor)->Submit("sleep", "100")
                                         : (*executor)->Submit("echo", absl::StrCat("task ", i));
    future.AddDoneCallback([](const mpigate::Future& done) {
      absl::StatusOr<std::string> result = done.Result();
      PrintLine(absl::StrCat("done ", done.task_id(), " ",
                             result.ok() ? *result : result.status().ToString()));
    });
  }
  // A task the service rejects at once: its answer comes after the service has read every task
  // before it (the stream is ordered), so none is left in this process to die with it.
  if ((*executor)->Submit("", "").Exception().ok()) {
    std::fprintf(stderr, "resume_client: a task with no function was accepted\n");
    return 1;
  }
  PrintLine("submitted");
  // Killed by the test; ending on its own would close the session.
  for (;;) pause();
}
