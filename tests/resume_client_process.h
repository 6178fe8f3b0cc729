// Runs tests/resume_client (a client process that records every result it reads) and kills it
// midway, for tests of sessions that outlive their client. Test-only.
#ifndef MPIGATE_TESTS_RESUME_CLIENT_PROCESS_H_
#define MPIGATE_TESTS_RESUME_CLIENT_PROCESS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace mpigate::testing {

// What a killed resume_client left behind.
struct KilledClient {
  // Its session's resume token.
  std::string token;
  // Every result it recorded before it died, by task id.
  std::map<uint64_t, std::string> recorded;
  // Results it recorded more than once: an outcome delivered twice.
  int duplicates = 0;
  // It said that the service had all of its tasks.
  bool submitted = false;
};

// Starts resume_client against `target` with `tasks` tasks, kills it with SIGKILL once the
// service has all of them and it has recorded at least `kill_after` results, and returns what it
// recorded, including lines it wrote just before it died. An error if it cannot be started or ends
// on its own.
absl::StatusOr<KilledClient> RunAndKillResumeClient(const std::string& target, int tasks,
                                                    size_t kill_after);

// What resume_client's task `id` returns: "task <id>", or "" for every 50th (a 100 ms sleep).
std::string ResumeClientResult(uint64_t id);

}  // namespace mpigate::testing

#endif  // MPIGATE_TESTS_RESUME_CLIENT_PROCESS_H_
