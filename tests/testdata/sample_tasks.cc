// A task library for tests: small but real, loaded by workers at start. One function of each kind
// the task API offers, and one of each way a function can fail.
#include <stdexcept>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/wrappers.pb.h"
#include "worker/task.h"

namespace {

absl::StatusOr<std::string> Greet(const mpigate::TaskContext& context, absl::string_view input) {
  return absl::StrCat("hello, ", input, " from worker ", context.rank());
}

absl::StatusOr<google::protobuf::Int64Value> Square(const mpigate::TaskContext&,
                                                    const google::protobuf::Int64Value& request) {
  google::protobuf::Int64Value response;
  response.set_value(request.value() * request.value());
  return response;
}

absl::StatusOr<std::string> Throw(const mpigate::TaskContext&, absl::string_view input) {
  throw std::domain_error(absl::StrCat("cannot handle '", input, "'"));
}

absl::StatusOr<std::string> Reject(const mpigate::TaskContext&, absl::string_view input) {
  return absl::OutOfRangeError(absl::StrCat("'", input, "' is out of range"));
}

}  // namespace

MPIGATE_TASK("sample.greet", "Returns 'hello, <input>' and the worker's index.", Greet);
MPIGATE_TASK("sample.square", "Squares an Int64Value.", Square);
MPIGATE_TASK("sample.throw", "Throws std::domain_error naming its input.", Throw);
MPIGATE_TASK("sample.reject", "Fails with OUT_OF_RANGE naming its input.", Reject);
