#include "server/hello_check.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"

namespace mpigate::server {

std::string FunctionNames(const wire::HelloFrame& hello) {
  std::vector<std::string> names;
  for (const wire::FunctionEntry& function : hello.functions()) names.push_back(function.name());
  return absl::StrJoin(names, ",");
}

BootVerdict JudgeFirstHellos(const std::map<int, wire::HelloFrame>& hellos) {
  BootVerdict verdict;
  if (hellos.empty()) return verdict;
  const wire::HelloFrame& first = hellos.begin()->second;
  for (const auto& [worker, hello] : hellos) {
    if (hello.has_error()) {
      verdict.failure = absl::Status(CanonicalCode(hello.error().code()),
                                     absl::StrCat("worker ", worker, " on ", hello.host(),
                                                  " failed to start: ", hello.error().message()));
      break;
    }
    if (FunctionNames(hello) != FunctionNames(first)) {
      verdict.failure = absl::FailedPreconditionError(absl::StrCat(
          "workers registered different functions: worker 0 has [", FunctionNames(first),
          "], worker ", worker, " has [", FunctionNames(hello), "]"));
      break;
    }
    if (hello.has_initializer_error() && verdict.broken.empty()) {
      verdict.broken = absl::StrCat("worker ", worker, " on ", hello.host(), ": ",
                                    hello.initializer_error().message());
    }
  }
  return verdict;
}

std::string ReplacementFailure(const wire::HelloFrame& hello, absl::string_view functions) {
  if (hello.has_error()) return hello.error().message();
  if (hello.has_initializer_error()) {
    return absl::StrCat("its initializer failed: ", hello.initializer_error().message());
  }
  if (const std::string names = FunctionNames(hello); names != functions) {
    return absl::StrCat("it registered other functions: [", names, "] against [", functions, "]");
  }
  return "";
}

std::vector<v1::FunctionInfo> FunctionInfos(const wire::HelloFrame& hello) {
  std::vector<v1::FunctionInfo> functions;
  for (const wire::FunctionEntry& entry : hello.functions()) {
    v1::FunctionInfo& function = functions.emplace_back();
    function.set_name(entry.name());
    function.set_description(entry.description());
    function.set_request_type(entry.request_type());
    function.set_response_type(entry.response_type());
    function.set_gang(entry.gang());
  }
  return functions;
}

}  // namespace mpigate::server
