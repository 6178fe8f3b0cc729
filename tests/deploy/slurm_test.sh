#!/usr/bin/env bash
# deploy/slurm end to end on this machine: stub sbatch and srun (tests/deploy/slurm_stubs) run the
# batch scripts locally with the SLURM_* variables SLURM would set, srun becoming mpiexec. For each
# launcher (mpiexec, srun) it submits deploy/slurm/mpigate.sbatch and checks that:
#   - the service comes up in world mode with 2 workers (its ready line on the job's output);
#   - the endpoint file appears at the chosen path (or the default $HOME/.mpigate/JOBID/endpoint),
#     mode 0600, naming a TCP address;
#   - deploy/slurm/client-example.sbatch, submitted with --dependency=after:JOBID, reads it and
#     gets every result right;
#   - SIGTERM to the batch shell (what `#SBATCH --signal=B:TERM@120` sends before the time limit)
#     drains the service: a task running at that moment still succeeds, the job exits 0, the
#     endpoint file is gone, and no process of the job is left (the test runs under
#     reap_descendants, which also waits for every orphan before the test ends).
# A third case runs the gateway as if on another node than the batch shell (tests/deploy/other_node's
# mpiexec: a PID namespace of its own), where the batch script cannot signal it and must drain it
# with `mpigate shutdown` through the endpoint file. That case takes a PID namespace: where none
# can be made the test fails, and `bazel test` skips it (tests/deploy/BUILD.bazel).
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"

service_script="${runfiles}/deploy/slurm/mpigate.sbatch"
client_script="${runfiles}/deploy/slurm/client-example.sbatch"
mpigate="${runfiles}/cli/mpigate"
export MPIGATE_SERVER="${runfiles}/server/mpigate-server"
export MPIGATE_CLI="$mpigate"
export PATH="${runfiles}/tests/deploy/slurm_stubs:${PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset MPIGATE_ENDPOINT MPIGATE_ENDPOINT_FILE MPIGATE_WORKERS MPIGATE_LAUNCHER
[ "$(command -v sbatch)" = "${runfiles}/tests/deploy/slurm_stubs/sbatch" ] ||
  fail "the sbatch stub is not first on PATH"

# The directives that make the drain happen in time.
signal_lead=$(sed -n 's/^#SBATCH --signal=B:TERM@\([0-9]*\)$/\1/p' "$service_script")
[ -n "$signal_lead" ] || fail "mpigate.sbatch has no '#SBATCH --signal=B:TERM@SECONDS' line"
default_grace=$(sed -n 's/.*MPIGATE_DRAIN_GRACE:-\([0-9]*\)s}.*/\1/p' "$service_script")
[ -n "$default_grace" ] && [ "$default_grace" -lt "$signal_lead" ] ||
  fail "the default drain grace (${default_grace:-?} s) is not shorter than the signal lead (${signal_lead} s)"

dir="$(mktemp -d /tmp/mpigate-deploy-XXXXXX)"
batch_pid=""
cleanup() {
  # Only if the test failed with the job still running: it must not outlive the test.
  if [ -n "$batch_pid" ]; then kill -KILL "$batch_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
export STUB_SLURM_STATE="${dir}/slurm"
export MPIGATE_RUN_DIR="${dir}/run"
export HOME="${dir}/home"
mkdir -p "$STUB_SLURM_STATE" "$HOME" "${dir}/submit"
cd "${dir}/submit"

# This test's other processes: the children of reap_descendants besides this shell.
leftovers() { ps -o pid=,args= --ppid "$PPID" | awk -v self="$$" '$1 != self'; }
no_leftovers() { [ -z "$(leftovers)" ]; }

# run_case LAUNCHER ENDPOINT_FILE [other-node]
run_case() {
  local launcher=$1 endpoint_file=$2 other_node=${3:-}
  local case_dir="${dir}/${launcher}${other_node:+-${other_node}}"
  mkdir -p "$case_dir"
  echo "=== launcher ${launcher}, endpoint file" \
    "${endpoint_file:-(default)}${other_node:+, the gateway on another node}"

  mkfifo "${case_dir}/job.out"
  local service_env=(MPIGATE_LAUNCHER="$launcher" MPIGATE_DRAIN_GRACE=20s)
  [ -z "$other_node" ] || service_env+=(MPIGATE_MPIEXEC="${runfiles}/tests/deploy/other_node/mpiexec")
  [ -z "$endpoint_file" ] || service_env+=(MPIGATE_ENDPOINT_FILE="$endpoint_file")
  env "${service_env[@]}" sbatch --wait --ntasks=3 --output="${case_dir}/job.out" \
    "$service_script" --log-level=info >"${case_dir}/sbatch.out" 2>"${case_dir}/sbatch.err" &
  batch_pid=$!
  exec 3<"${case_dir}/job.out"
  if ! await_ready_line 3 "job: "; then
    cat "${case_dir}/sbatch.err" >&2
    fail "the service job ended before its ready line"
  fi
  # The rest of the job's output, to its end, so that the job never blocks on it.
  cat <&3 >"${case_dir}/job.rest" &
  local copier=$!
  exec 3<&-

  local job_id
  job_id=$(sed -n 's/^Submitted batch job \([0-9]*\)$/\1/p' "${case_dir}/sbatch.out")
  [ -n "$job_id" ] || fail "sbatch printed no job id: $(cat "${case_dir}/sbatch.out")"
  local expected_file=${endpoint_file:-${HOME}/.mpigate/${job_id}/endpoint}
  case "$ready_line" in
    *"2 workers"*"endpoint file ${expected_file}, pid "*) ;;
    *) fail "the ready line names not 2 workers and ${expected_file}: ${ready_line}" ;;
  esac
  [ -f "$expected_file" ] || fail "no endpoint file at ${expected_file}"
  local mode
  mode=$(stat -c %a "$expected_file")
  [ "$mode" = 600 ] || fail "the endpoint file ${expected_file} has mode ${mode}, not 600"
  local target
  target=$(head -n 1 "$expected_file")
  [[ "$target" =~ ^[^/:]+:[0-9]+$ ]] && [ "${target##*:}" != 0 ] ||
    fail "the endpoint file names '${target}', not HOST:PORT with the port taken"
  if [ "$launcher" = srun ]; then
    grep -q "^srun --mpi=pmix -n 3 --kill-on-bad-exit=1 ${MPIGATE_SERVER} --world" \
      "${STUB_SLURM_STATE}/calls" || fail "the job did not start the service with srun --mpi=pmix"
  fi

  # The example client job, as a user would submit it.
  local client_env=()
  if [ -n "$endpoint_file" ]; then
    client_env+=(MPIGATE_ENDPOINT_FILE="$endpoint_file")
  else
    client_env+=(MPIGATE_SERVICE_JOB="$job_id")
  fi
  local client_status=0
  env "${client_env[@]}" sbatch --wait --dependency="after:${job_id}" \
    --output="${case_dir}/client.out" "$client_script" >/dev/null || client_status=$?
  sed 's/^/client: /' "${case_dir}/client.out"
  [ "$client_status" -eq 0 ] || fail "client-example.sbatch exited ${client_status}"
  grep -q "^client-example: map echo: 1000 items, every result correct$" "${case_dir}/client.out" ||
    fail "client-example.sbatch did not report every result correct"
  grep -q "^state *READY" "${case_dir}/client.out" || fail "mpigate status did not show READY"

  # A task that runs when time runs out: the drain lets it finish.
  env MPIGATE_ENDPOINT_FILE="$expected_file" "$mpigate" submit sleep 3000 \
    >"${case_dir}/task.out" 2>"${case_dir}/task.err" &
  local task=$!
  busy() {
    env MPIGATE_ENDPOINT_FILE="$expected_file" "$mpigate" status 2>/dev/null |
      grep -q "^workers *2: 1 busy"
  }
  wait_for 60 "the sleep task to run" busy

  echo "=== SIGTERM to the batch shell (job ${job_id}, pid ${batch_pid}), as --signal=B:TERM sends"
  kill -TERM "$batch_pid"
  local job_status=0
  wait "$batch_pid" || job_status=$?
  batch_pid=""
  wait "$copier" || true
  sed 's/^/job: /' "${case_dir}/job.rest"
  [ "$job_status" -eq 0 ] || fail "the service job exited ${job_status} after SIGTERM, not 0"
  if [ -n "$other_node" ]; then
    grep -q "is not on $(hostname); stopping it with mpigate shutdown" "${case_dir}/job.rest" ||
      fail "the batch script did not turn to mpigate shutdown for a gateway it cannot signal"
    grep -q "stopping (.*SLURM job ${job_id} is running out of time), draining" \
      "${case_dir}/job.rest" || fail "the server did not drain on mpigate shutdown"
  else
    grep -q "stopping (SIGTERM), draining" "${case_dir}/job.rest" || fail "the server did not drain"
  fi
  grep -q "stopped cleanly" "${case_dir}/job.rest" || fail "the server did not stop cleanly"
  local task_status=0
  wait "$task" || task_status=$?
  [ "$task_status" -eq 0 ] ||
    fail "the task running at SIGTERM failed (${task_status}): $(cat "${case_dir}/task.err")"
  [ ! -e "$expected_file" ] || fail "the endpoint file ${expected_file} is still there"
  wait_for 60 "every process of the job to exit (left: $(leftovers | tr '\n' ';'))" no_leftovers
  echo "=== launcher ${launcher}: passed"
}

run_case mpiexec "${dir}/shared/service/endpoint"
run_case srun ""
run_case mpiexec "${dir}/elsewhere/endpoint" other-node
echo "PASS: deploy/slurm: service up, endpoint file 0600, client job correct, drained on SIGTERM," \
  "with mpiexec and with srun; and with the gateway on another node, drained through mpigate" \
  "shutdown"
