#!/usr/bin/env bash
# deploy/mpigate-pool.sh with the MPI library the server links (tools/demo.sh's pool): it starts
# a pool of 2 workers under that library's mpiexec (Open MPI: spawn mode under `-n 1`; MPICH:
# world mode under `-n 3`), which serves a map; SIGTERM to the script while a task runs drains
# the pool: the task finishes, the script exits 0, and no process of the pool is left.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
script="${runfiles}/deploy/mpigate-pool.sh"
mpigate="${runfiles}/cli/mpigate"
export MPIGATE_SERVER="${runfiles}/server/mpigate-server"
export MPIGATE_WORKERS=2
for file in "$script" "$mpigate" "$MPIGATE_SERVER"; do
  [ -x "$file" ] || fail "missing runfile ${file}"
done
# Under /tmp: a Unix socket's path must fit in 108 bytes, which Bazel's TEST_TMPDIR may not.
dir="$(mktemp -d /tmp/mpigate-pool-script-XXXXXX)"
trap 'kill_servers; rm -rf "$dir"' EXIT

start_server --launcher "${dir}/pool" "$script" --workers=2 --listen="unix:${dir}/gateway.sock" \
  --endpoint-file="${dir}/endpoint"
export MPIGATE_ENDPOINT_FILE="${dir}/endpoint"
seq 1 100 >"${dir}/items.txt"
"$mpigate" map echo -q "${dir}/items.txt" >"${dir}/map.txt" || fail "mpigate map echo failed"
cmp -s "${dir}/items.txt" "${dir}/map.txt" || fail "mpigate map echo did not return its items"

# A task that runs when the script is told to stop: the drain lets it finish.
"$mpigate" submit sleep 3000 >"${dir}/task.out" 2>"${dir}/task.err" &
task=$!
busy() { "$mpigate" status 2>/dev/null | grep -q "^workers *2: 1 busy"; }
wait_for 60 "the sleep task to run" busy
script_pid="${server_command_pid[${dir}/pool]}"
kill -TERM "$script_pid"
status=0
wait "$script_pid" || status=$?
unset "server_command_pid[${dir}/pool]"
if [ "$status" -ne 0 ]; then
  cat "${dir}/pool.stderr" >&2
  fail "mpigate-pool.sh exited ${status} after SIGTERM, not 0"
fi
grep -q "stopping (SIGTERM), draining" "${dir}/pool.stderr" || fail "the server did not drain"
grep -q "stopped cleanly" "${dir}/pool.stderr" || fail "the server did not stop cleanly"
task_status=0
wait "$task" || task_status=$?
[ "$task_status" -eq 0 ] ||
  fail "the task running at SIGTERM failed (${task_status}): $(cat "${dir}/task.err")"
server="${server_pid[${dir}/pool]}"
gone() { ! kill -0 "$server" 2>/dev/null; }
wait_for 10 "mpigate-server (pid ${server}) to exit" gone
echo "PASS: mpigate-pool.sh served a map and drained on SIGTERM with a task running"
