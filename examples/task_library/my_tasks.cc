// A task library built out of tree against an installed mpigate (pkg-config mpigate-task): the
// functions mytasks.shout (bytes) and mytasks.square (typed). See Makefile, and man mpigate-task.
#include <mpigate/task.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "my_tasks.pb.h"

namespace {

// Bytes in, bytes (or an error) out.
absl::StatusOr<std::string> Shout(const mpigate::TaskContext& context, absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("mytasks.shout: nothing to shout");
  return absl::StrCat(text, "! (worker ", context.rank(), " of ", context.pool_size(), ")");
}

// Typed: a Protobuf request in, a Protobuf response out.
absl::StatusOr<mytasks::SquareResponse> Square(const mpigate::TaskContext&,
                                               const mytasks::SquareRequest& request) {
  mytasks::SquareResponse response;
  response.set_y(request.x() * request.x());
  return response;
}

}  // namespace

MPIGATE_TASK("mytasks.shout", "Text in, the text shouted out.", Shout);
MPIGATE_TASK("mytasks.square", "x in, x*x out.", Square);
