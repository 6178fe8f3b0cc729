#include "server/runtime_watch.h"

#include <utility>

#include "absl/strings/str_cat.h"

#ifdef MPIGATE_WITH_PMIX
#include <pmix.h>
#endif

namespace mpigate::server {
namespace {

// ORTE's process states (orte/mca/plm/plm_types.h), which Open MPI 4.1's runtime puts in the
// table as they are. Every state above kUnterminated is an ended process's, in PMIx's own
// numbering too.
constexpr uint32_t kUnterminated = 15;
constexpr uint32_t kTerminated = 20;
constexpr uint32_t kKilledByRuntime = 51;
constexpr uint32_t kAborted = 52;
constexpr uint32_t kAbortedBySignal = 54;
constexpr uint32_t kExitedWithoutFinalize = 55;
constexpr uint32_t kCommunicationFailed = 56;
constexpr uint32_t kCalledAbort = 58;
constexpr uint32_t kExitedNonZero = 62;

std::string HowEnded(const RuntimeProcess& process) {
  const std::string code = absl::StrCat(" (exit code ", process.exit_code, ")");
  switch (process.state) {
    case kTerminated:
      return absl::StrCat("exited", code);
    case kKilledByRuntime:
      return "was killed by the MPI runtime";
    case kAborted:
    case kCalledAbort:
      return absl::StrCat("aborted", code);
    case kAbortedBySignal:
      // Open MPI 4.1's table does not say which signal (its exit code is 0).
      return "was killed by a signal";
    case kExitedWithoutFinalize:
      return absl::StrCat("exited without finalizing MPI", code);
    case kCommunicationFailed:
      return "lost its connection to the runtime";
    case kExitedNonZero:
      return absl::StrCat("exited with status ", process.exit_code);
    default:
      return absl::StrCat("ended (runtime state ", process.state, ")", code);
  }
}

}  // namespace

std::optional<std::string> RuntimeSaysEnded(const std::vector<RuntimeProcess>& table, uint32_t rank,
                                            pid_t pid) {
  for (const RuntimeProcess& process : table) {
    if (process.rank != rank || process.pid != pid || pid <= 0) continue;
    if (process.state <= kUnterminated) return std::nullopt;
    return absl::StrCat("the MPI runtime says it ", HowEnded(process));
  }
  return std::nullopt;
}

#ifdef MPIGATE_WITH_PMIX

absl::StatusOr<std::unique_ptr<RuntimeWatch>> RuntimeWatch::Connect() {
  // Open MPI's MPI_Init has initialised PMIx already: this shares its connection.
  pmix_proc_t self;
  if (const pmix_status_t rc = PMIx_Init(&self, nullptr, 0); rc != PMIX_SUCCESS) {
    return absl::UnavailableError(absl::StrCat("PMIx_Init: ", PMIx_Error_string(rc)));
  }
  return std::unique_ptr<RuntimeWatch>(new RuntimeWatch());
}

RuntimeWatch::~RuntimeWatch() { PMIx_Finalize(nullptr, 0); }

absl::StatusOr<std::vector<RuntimeProcess>> RuntimeWatch::Processes(const std::string& job) {
  pmix_query_t query;
  PMIX_QUERY_CONSTRUCT(&query);
  pmix_status_t rc = PMIX_SUCCESS;
  PMIX_ARGV_APPEND(rc, query.keys, PMIX_QUERY_PROC_TABLE);
  PMIX_INFO_CREATE(query.qualifiers, 1);
  query.nqual = 1;
  PMIX_INFO_LOAD(&query.qualifiers[0], PMIX_NSPACE, job.c_str(), PMIX_STRING);
  pmix_info_t* results = nullptr;
  size_t result_count = 0;
  rc = PMIx_Query_info(&query, 1, &results, &result_count);
  PMIX_QUERY_DESTRUCT(&query);
  if (rc != PMIX_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("PMIx_Query_info(proc table of ", job, "): ", PMIx_Error_string(rc)));
  }
  std::vector<RuntimeProcess> table;
  for (size_t i = 0; i < result_count; ++i) {
    if (results[i].value.type != PMIX_DATA_ARRAY || results[i].value.data.darray == nullptr) {
      continue;
    }
    const pmix_data_array_t& entries = *results[i].value.data.darray;
    // Open MPI 4.1's runtime answers an array of infos holding pmix_proc_info_t; PMIx's
    // standard shape is an array of pmix_proc_info_t itself.
    for (size_t j = 0; j < entries.size; ++j) {
      const pmix_proc_info_t* info = nullptr;
      if (entries.type == PMIX_INFO) {
        const pmix_info_t& entry = static_cast<const pmix_info_t*>(entries.array)[j];
        if (entry.value.type == PMIX_PROC_INFO) info = entry.value.data.pinfo;
      } else if (entries.type == PMIX_PROC_INFO) {
        info = &static_cast<const pmix_proc_info_t*>(entries.array)[j];
      }
      if (info == nullptr) continue;
      table.push_back(RuntimeProcess{info->proc.rank, info->pid,
                                     static_cast<uint32_t>(info->state), info->exit_code});
    }
  }
  PMIX_INFO_FREE(results, result_count);
  return table;
}

absl::Status RuntimeWatch::Kill(const std::string& job, uint32_t rank) {
  pmix_proc_t target;
  PMIX_PROC_LOAD(&target, job.c_str(), rank);
  // ORTE acts on the directive's key alone, but drops one without a value.
  bool kill = true;
  pmix_info_t directive;
  PMIX_INFO_LOAD(&directive, PMIX_JOB_CTRL_KILL, &kill, PMIX_BOOL);
  pmix_info_t* results = nullptr;
  size_t result_count = 0;
  const pmix_status_t rc = PMIx_Job_control(&target, 1, &directive, 1, &results, &result_count);
  PMIX_INFO_DESTRUCT(&directive);
  if (results != nullptr) PMIX_INFO_FREE(results, result_count);
  if (rc != PMIX_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("PMIx_Job_control(kill ", job, " rank ", rank, "): ", PMIx_Error_string(rc)));
  }
  return absl::OkStatus();
}

#else  // No PMIx: MPICH's runtime (Hydra) is not asked.

absl::StatusOr<std::unique_ptr<RuntimeWatch>> RuntimeWatch::Connect() {
  return absl::UnimplementedError("this build's MPI library has no PMIx runtime to ask");
}

RuntimeWatch::~RuntimeWatch() = default;

absl::StatusOr<std::vector<RuntimeProcess>> RuntimeWatch::Processes(const std::string&) {
  return absl::UnimplementedError("no PMIx");
}

absl::Status RuntimeWatch::Kill(const std::string&, uint32_t) {
  return absl::UnimplementedError("no PMIx");
}

#endif

}  // namespace mpigate::server
