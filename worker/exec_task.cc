#include "worker/exec_task.h"

#include "mpigate/v1/exec.pb.h"

namespace mpigate::worker {

TaskDefinition ExecTaskDefinition() {
  return TypedTask<v1::ExecRequest, v1::ExecResponse>(
      kExecFunction,
      "Runs a program (mpigate.v1.ExecRequest) and returns its exit status and output.",
      [](const TaskContext&, const v1::ExecRequest&) -> absl::StatusOr<v1::ExecResponse> {
        return absl::UnimplementedError("exec: not written yet");
      });
}

}  // namespace mpigate::worker
