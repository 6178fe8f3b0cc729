// A task library for tests: small but real, loaded by workers at start. One function of each kind
// the task API offers, and one of each way a function can fail; gang functions that show their
// gang, fail on one rank, or wait to be interrupted; plain functions that show which worker, which
// item of a range map and which process they ran as; and one that kills its process.
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/wrappers.pb.h"
#include "worker/gang.h"
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

// Every rank checks that its communicator matches what the context says, then gang rank 0
// gathers the ranks' worker indices, in gang rank order. The checks fail only after the gather,
// so that a rank that fails one does not leave the others blocked in it.
absl::StatusOr<std::string> GangInfo(const mpigate::GangContext& gang, absl::string_view) {
  int size = 0;
  int rank = -1;
  MPI_Comm_size(gang.comm(), &size);
  MPI_Comm_rank(gang.comm(), &rank);
  const int worker = gang.rank();
  std::vector<int> workers(gang.gang_rank() == 0 ? size : 0);
  MPI_Gather(&worker, 1, MPI_INT, workers.data(), 1, MPI_INT, 0, gang.comm());
  if (size != gang.gang_size() || rank != gang.gang_rank()) {
    return absl::InternalError(absl::StrCat("comm() has ", size, " ranks and this is rank ", rank,
                                            "; the context says ", gang.gang_size(), " and ",
                                            gang.gang_rank()));
  }
  if (gang.gang_rank() != 0) return std::string();
  return absl::StrCat("gang_size=", size, " workers=", absl::StrJoin(workers, ","));
}

// The input names a gang rank, which refuses after the whole gang has met at a barrier.
absl::StatusOr<std::string> GangFail(const mpigate::GangContext& gang, absl::string_view input) {
  MPI_Barrier(gang.comm());
  int refusing = 0;
  if (!absl::SimpleAtoi(input, &refusing)) {
    return absl::InvalidArgumentError(absl::StrCat("'", input, "' is not a gang rank"));
  }
  if (gang.gang_rank() == refusing) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", refusing, " refuses"));
  }
  return std::string("ok");
}

// Waits, together, until any rank is interrupted.
absl::StatusOr<std::string> GangWait(const mpigate::GangContext& gang, absl::string_view) {
  while (!gang.AnyCancelled()) {
    if (gang.gang_rank() == 0) gang.ReportProgress(0.5, "waiting");
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::CancelledError("gang interrupted");
}

// The gang rank named by the input crashes its worker (abort()) once the whole gang has met; the
// others then wait for it in a second barrier, which never ends.
absl::StatusOr<std::string> GangCrash(const mpigate::GangContext& gang, absl::string_view input) {
  int crashing = 0;
  if (!absl::SimpleAtoi(input, &crashing)) {
    return absl::InvalidArgumentError(absl::StrCat("'", input, "' is not a gang rank"));
  }
  MPI_Barrier(gang.comm());
  if (gang.gang_rank() == 0) gang.ReportProgress(0.5, "met");
  if (gang.gang_rank() == crashing) std::abort();
  MPI_Barrier(gang.comm());
  return std::string("ok");
}

absl::StatusOr<std::string> WhoAmI(const mpigate::TaskContext& context, absl::string_view) {
  return absl::StrCat(context.rank());
}

absl::StatusOr<std::string> Seeded(const mpigate::TaskContext& context, absl::string_view input) {
  return absl::StrCat(context.item_index(), ":", context.item_seed(), ":", input);
}

// Ends its process as the input says, or never returns.
absl::StatusOr<std::string> Crash(const mpigate::TaskContext& context, absl::string_view input) {
  int status = 0;
  if (input == "segv") {
    // Dies by the signal even in a sanitizer build, whose handler would report it and exit 1.
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
  } else if (input == "abort") {
    std::abort();
  } else if (input == "sigkill") {
    raise(SIGKILL);  // What the kernel's OOM killer sends.
  } else if (absl::ConsumePrefix(&input, "exit:") && absl::SimpleAtoi(input, &status)) {
    std::exit(status);
  } else if (input == "spin") {
    // Says it has started, then never polls cancelled(): only a kill ends it.
    context.ReportProgress(0, "spinning");
    for (volatile uint64_t i = 0;; i = i + 1) {
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("no such way to crash: '", input, "'"));
}

// The name of the executable the task runs in: mpigate-runner, or mpigate-worker in process.
absl::StatusOr<std::string> Process(const mpigate::TaskContext&, absl::string_view) {
  char path[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) return absl::InternalError("cannot read /proc/self/exe");
  const std::string exe(path, static_cast<size_t>(length));
  return exe.substr(exe.rfind('/') + 1);
}

}  // namespace

MPIGATE_TASK("sample.greet", "Returns 'hello, <input>' and the worker's index.", Greet);
MPIGATE_TASK("sample.square", "Squares an Int64Value.", Square);
MPIGATE_TASK("sample.throw", "Throws std::domain_error naming its input.", Throw);
MPIGATE_TASK("sample.reject", "Fails with OUT_OF_RANGE naming its input.", Reject);
MPIGATE_GANG_TASK("sample.gang_info",
                  "Gang: rank 0 returns 'gang_size=K workers=W0,W1,...' in gang rank order; other "
                  "ranks return ''.",
                  GangInfo);
MPIGATE_GANG_TASK("sample.gang_fail",
                  "Gang: after a barrier, the gang rank named by the input fails with "
                  "INVALID_ARGUMENT 'rank R refuses'; the others return 'ok'.",
                  GangFail);
MPIGATE_GANG_TASK("sample.gang_wait",
                  "Gang: waits until interrupted (rank 0 reports progress 0.5 'waiting'), then "
                  "fails CANCELLED 'gang interrupted'.",
                  GangWait);
MPIGATE_GANG_TASK("sample.gang_crash",
                  "Gang: after a barrier (rank 0 reports progress 0.5 'met'), the gang rank named "
                  "by the input calls abort(), and the others wait for it in a barrier for ever.",
                  GangCrash);
MPIGATE_TASK("sample.whoami", "Returns the worker's index in decimal.", WhoAmI);
MPIGATE_TASK("sample.seeded", "Returns '<item index>:<item seed>:<input>' (range maps).", Seeded);
MPIGATE_TASK("sample.crash",
             "Kills its process: 'segv' (SIGSEGV), 'abort', 'exit:N', 'sigkill' (as the OOM killer "
             "does); 'spin' loops for ever without polling for interrupts.",
             Crash);
MPIGATE_TASK("sample.process",
             "Returns the name of the executable it runs in (mpigate-runner, or mpigate-worker).",
             Process);
