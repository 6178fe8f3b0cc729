// What the gateway makes of its workers' hellos (wire::HelloFrame): whether the first job can
// serve, whether a replacement may take a worker over, and the functions the pool offers.
//
// Every worker must register the same functions, since any task may go to any worker, and a
// replacement must register the ones its pool was started with. Pure logic on frames.
//
// Thread-safety: functions of their arguments only; any thread may call them.
#ifndef MPIGATE_SERVER_HELLO_CHECK_H_
#define MPIGATE_SERVER_HELLO_CHECK_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "mpigate/v1/gateway.pb.h"
#include "wire/frames.pb.h"

namespace mpigate::server {

// A worker's registered functions, as a comparable list.
std::string FunctionNames(const wire::HelloFrame& hello);

// What the first job's hellos (by worker) say.
struct BootVerdict {
  // A worker failed to start (its own code and message), or workers registered different
  // functions (FAILED_PRECONDITION): the pool cannot serve.
  absl::Status failure;
  // Else, if an initializer failed, which and why: the pool is up but broken.
  std::string broken;
};
BootVerdict JudgeFirstHellos(const std::map<int, wire::HelloFrame>& hellos);

// Why a replacement's hello keeps it from serving (it failed to start, its initializer failed,
// or it registered other functions than `functions`, a FunctionNames() list); "" if it may serve.
std::string ReplacementFailure(const wire::HelloFrame& hello, absl::string_view functions);

// The functions a hello registers, as ListFunctions shows them.
std::vector<v1::FunctionInfo> FunctionInfos(const wire::HelloFrame& hello);

}  // namespace mpigate::server

#endif  // MPIGATE_SERVER_HELLO_CHECK_H_
