#include "worker/hello_deadline.h"

#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mpigate::worker {

HelloDeadline::HelloDeadline(absl::Duration timeout, absl::string_view awaited) {
  if (timeout == absl::InfiniteDuration()) return;
  std::string said =
      absl::StrCat("mpigate-worker: ", awaited, " not done within ", absl::FormatDuration(timeout),
                   ": the gateway has given this worker up; exiting\n");
  thread_ = std::thread([this, timeout, said = std::move(said)] {
    if (met_.WaitForNotificationWithTimeout(timeout)) return;
    [[maybe_unused]] const ssize_t written = write(STDERR_FILENO, said.data(), said.size());
    _exit(1);
  });
}

void HelloDeadline::Met() {
  if (!met_.HasBeenNotified()) met_.Notify();
  if (thread_.joinable()) thread_.join();
}

}  // namespace mpigate::worker
