#include "server/worker_count.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mpigate::server {

absl::StatusOr<int> ResolveWorkerCount(int requested, const char* env,
                                       std::optional<int> universe_size, int world_size,
                                       int cores) {
  if (requested > 0) return requested;
  if (env != nullptr && env[0] != '\0') {
    int from_env = 0;
    if (!absl::SimpleAtoi(env, &from_env) || from_env <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("MPIGATE_MAX_WORKERS must be a positive integer, got '", env, "'"));
    }
    return from_env;
  }
  if (universe_size.has_value() && *universe_size > world_size) {
    return *universe_size - world_size;
  }
  return cores > 0 ? cores : 1;
}

}  // namespace mpigate::server
