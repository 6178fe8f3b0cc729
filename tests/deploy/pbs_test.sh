#!/usr/bin/env bash
# deploy/pbs end to end on this machine: stub qsub and qstat (tests/deploy/pbs_stubs) run the job
# scripts locally with the PBS_* variables PBS would set. Submits deploy/pbs/mpigate.pbs with a
# walltime of 45 s and MPIGATE_STOP_BEFORE=25, and checks that the service comes up with 2 workers
# and its endpoint file (mode 0600) at the chosen path, that deploy/pbs/client-example.pbs
# (-W depend=after:JOBID) gets every result right, and that the script's own timer, 25 s before
# the walltime, drains the service: the job exits 0, the endpoint file is gone and no process of
# the job is left. Then a second job whose gateway runs as if on another node than the job's shell
# (tests/deploy/other_node's mpiexec: a PID namespace of its own), stopped by SIGTERM to the job's
# shell: the script must drain it with `mpigate shutdown` through the endpoint file. That job
# takes a PID namespace: where none can be made the test fails, and `bazel test` skips it
# (tests/deploy/BUILD.bazel).
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"

export MPIGATE_SERVER="${runfiles}/server/mpigate-server"
export MPIGATE_CLI="${runfiles}/cli/mpigate"
export PATH="${runfiles}/tests/deploy/pbs_stubs:${PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset MPIGATE_ENDPOINT MPIGATE_ENDPOINT_FILE MPIGATE_WORKERS MPIGATE_WALLTIME

dir="$(mktemp -d /tmp/mpigate-pbs-XXXXXX)"
job_pid=""
cleanup() {
  if [ -n "$job_pid" ]; then kill -KILL "$job_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
export STUB_PBS_STATE="${dir}/pbs" MPIGATE_RUN_DIR="${dir}/run" HOME="${dir}/home"
mkdir -p "$STUB_PBS_STATE" "$HOME" "${dir}/submit"
cd "${dir}/submit"
leftovers() { ps -o pid=,args= --ppid "$PPID" | awk -v self="$$" '$1 != self'; }
no_leftovers() { [ -z "$(leftovers)" ]; }

# Waits for the service job ($job_pid) and the copy of its output ($copier), prints that output
# (the file given), and sets job_status.
finish_job() {
  job_status=0
  wait "$job_pid" || job_status=$?
  job_pid=""
  wait "$copier" || true
  sed 's/^/job: /' "$1"
}

endpoint="${dir}/shared/endpoint"
mkfifo "${dir}/job.out"
qsub -W block=true -l walltime=00:00:45 -l select=1:ncpus=3:mpiprocs=3 \
  -v "MPIGATE_ENDPOINT_FILE=${endpoint},MPIGATE_STOP_BEFORE=25,MPIGATE_DRAIN_GRACE=10s" \
  -o "${dir}/job.out" "${runfiles}/deploy/pbs/mpigate.pbs" >"${dir}/qsub.out" 2>"${dir}/qsub.err" &
job_pid=$!
exec 3<"${dir}/job.out"
await_ready_line 3 "job: " ||
  fail "the service job ended before its ready line: $(cat "${dir}/qsub.err")"
job_head=$lines_to_ready
cat <&3 >"${dir}/job.rest" &
copier=$!
exec 3<&-
job_id=$(head -n 1 "${dir}/qsub.out")
case "$ready_line" in
  *"2 workers"*"endpoint file ${endpoint}, pid "*) ;;
  *) fail "the ready line names not 2 workers and ${endpoint}: ${ready_line}" ;;
esac
[ "$(stat -c %a "$endpoint")" = 600 ] || fail "the endpoint file has mode $(stat -c %a "$endpoint")"
[[ "$(head -n 1 "$endpoint")" =~ ^[^/:]+:[1-9][0-9]*$ ]] ||
  fail "the endpoint file names '$(head -n 1 "$endpoint")', not HOST:PORT"

client_status=0
qsub -W block=true -W "depend=after:${job_id}" -v "MPIGATE_ENDPOINT_FILE=${endpoint}" -o "${dir}/client.out" \
  "${runfiles}/deploy/pbs/client-example.pbs" >/dev/null || client_status=$?
sed 's/^/client: /' "${dir}/client.out"
[ "$client_status" -eq 0 ] || fail "client-example.pbs exited ${client_status}"
grep -q "^client-example: map echo: 1000 items, every result correct$" "${dir}/client.out" ||
  fail "client-example.pbs did not report every result correct"

echo "=== waiting for the job's timer to drain the service, 25 s before its walltime"
finish_job "${dir}/job.rest"
[ "$job_status" -eq 0 ] || fail "the service job exited ${job_status}, not 0"
grep -q "^mpigate.pbs: will drain in 20 s, 25 s before the walltime (00:00:45)$" <<<"$job_head" ||
  fail "the job did not read its walltime through qstat"
grep -q "^mpigate.pbs: the walltime ends in 25 s: stopping the service" "${dir}/job.rest" ||
  fail "the job's timer did not stop the service"
grep -q "stopped cleanly" "${dir}/job.rest" || fail "the server did not stop cleanly"
[ ! -e "$endpoint" ] || fail "the endpoint file is still there"
wait_for 60 "every process of the job to exit (left: $(leftovers | tr '\n' ';'))" no_leftovers

echo "=== a job whose gateway the job's shell cannot signal, stopped by SIGTERM to that shell"
endpoint="${dir}/elsewhere/endpoint"
mkfifo "${dir}/elsewhere.out"
env MPIGATE_MPIEXEC="${runfiles}/tests/deploy/other_node/mpiexec" \
  qsub -W block=true -l select=1:ncpus=2:mpiprocs=2 -v "MPIGATE_ENDPOINT_FILE=${endpoint}" \
  -o "${dir}/elsewhere.out" "${runfiles}/deploy/pbs/mpigate.pbs" >/dev/null \
  2>"${dir}/elsewhere.err" &
job_pid=$!
exec 3<"${dir}/elsewhere.out"
await_ready_line 3 "job: " ||
  fail "the second service job ended before its ready line: $(cat "${dir}/elsewhere.err")"
cat <&3 >"${dir}/elsewhere.rest" &
copier=$!
exec 3<&-
[ -f "$endpoint" ] || fail "no endpoint file at ${endpoint}"
kill -TERM "$job_pid"
finish_job "${dir}/elsewhere.rest"
[ "$job_status" -eq 0 ] || fail "the second service job exited ${job_status} after SIGTERM, not 0"
grep -q "stopping (PBS job [^:]*: SIGTERM), draining" "${dir}/elsewhere.rest" ||
  fail "the script did not drain the gateway through mpigate shutdown"
grep -q "stopped cleanly" "${dir}/elsewhere.rest" || fail "the second server did not stop cleanly"
[ ! -e "$endpoint" ] || fail "the second endpoint file is still there"
wait_for 60 "every process of the second job to exit (left: $(leftovers | tr '\n' ';'))" \
  no_leftovers
echo "PASS: deploy/pbs: service up, endpoint file 0600, client job correct, drained before the" \
  "walltime; a gateway on another node drained through mpigate shutdown on SIGTERM"
