#!/usr/bin/env bash
# A worker on another host lost in a spawned pool (issue 24), on hosts made of network namespaces
# (tests/multihost/netns_hosts.sh), in the default deployment's layout: `mpiexec -n 1
# mpigate-server` on the head node hd, with mpiexec's flags of deploy/mpigate-pool.sh, its 2
# workers spawned onto h1 and h2. Neither worker's pid can be watched from hd.
#
# The scenario, $LOSS_SCENARIO:
# - `gang`: the client (gang_loss_client, from a fourth namespace) runs sample.gang_crash over both
#   workers: gang rank 1 aborts its worker while rank 0 waits for it in a barrier. A worker that
#   runs a gang function sends no heartbeats, so only Open MPI's runtime, asked by the gateway
#   (server/runtime_watch.h), sees it die. Within about a second the gateway logs the loss as the
#   runtime saw it, fails the gang ABORTED, has the runtime kill the survivor (MPI never releases
#   it from the barrier), and replaces both; the client's next gang over both workers then runs.
# - `idle`: worker 1's process on h2 is killed with SIGKILL while it waits for work; its silence is
#   seen within about a second, and the pool replaces it.
# Either way, SIGTERM then stops the pool, mpiexec exits 0, and no process is left in any
# namespace (a worker of a job that lost a process on another host once waited for good in
# MPI_Finalize, and mpiexec after its last process).
#
# Where namespaces cannot be made (not root, no CAP_SYS_ADMIN/CAP_NET_ADMIN, no iproute2) the test
# fails, saying why; `bazel test` skips it there (tests/multihost/BUILD.bazel).
set -euo pipefail

scenario="${LOSS_SCENARIO:?gang or idle}"

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/multihost/netns_hosts.sh"
gang_client="${runfiles}/tests/multihost/gang_loss_client"
tasks="${runfiles}/tests/testdata/libsample_tasks.so"
for file in "$server" "$agent" "$gang_client"; do
  [ -x "$file" ] || fail "missing runfile ${file}"
done
[ -f "$tasks" ] || fail "missing runfile ${tasks}"

# --- The service --------------------------------------------------------------------------------
export MPIGATE_NETNS_HOSTS="10.231.0.11=${h1}=h1 10.231.0.12=${h2}=h2"
# As deploy/mpigate-pool.sh runs it: without these mpiexec aborts every job once a worker dies,
# and waits for good after its last process once a worker on another host was lost.
pool_launch --spawn --enable-recovery --mca orte_abort_on_non_zero_status 0
start_server --launcher "${dir}/pool" ip netns exec "$hd" "${launch[@]}" \
  "$server" --workers=2 --spawn-info host=10.231.0.11,10.231.0.12 --task-lib="$tasks" \
  --listen=10.231.0.10:0 --endpoint-file="${dir}/endpoint"
target="$(head -n 1 "${dir}/endpoint")"
token="$(sed -n 's/^token=//p' "${dir}/endpoint")"
if [ -n "$token" ]; then export MPIGATE_TOKEN="$token"; fi
for expected in "worker 0 up on h1" "worker 1 up on h2"; do
  grep -q "$expected" "${dir}/pool.stderr" || fail "no \"${expected}\" in the log"
done

# --- The loss -----------------------------------------------------------------------------------
if [ "$scenario" = gang ]; then
  status=0
  ip netns exec "$cn" "$gang_client" --endpoint="$target" || status=$?
  if [ "$status" -ne 0 ]; then
    cat "${dir}/pool.stderr" >&2
    fail "gang_loss_client failed (status ${status})"
  fi
  expected_lines=(
    "WARNING .*worker 1 on h2 (pid [0-9]*) was lost: the MPI runtime says it was killed by a signal"
    "WARNING .*killing worker 0 on h1 (pid [0-9]*) through the MPI runtime: its gang lost worker 1"
  )
else
  victim=""
  for pid in $(ip netns pids "$h2"); do
    if [ "$(cat "/proc/${pid}/comm" 2>/dev/null)" = "mpigate-worker" ]; then victim="$pid"; fi
  done
  [ -n "$victim" ] || fail "no mpigate-worker process in ${h2}"
  kill -KILL "$victim"
  expected_lines=("WARNING .*worker 1 on h2 (pid ${victim}) was lost: it sent no heartbeat")
fi
whole_again() { grep -q "the pool is whole again: 2 workers" "${dir}/pool.stderr"; }
wait_for 60 "the pool to be whole again" whole_again
grep "was lost\|killing\|whole again" "${dir}/pool.stderr"
for expected in "${expected_lines[@]}"; do
  if ! grep -q "$expected" "${dir}/pool.stderr"; then
    cat "${dir}/pool.stderr" >&2
    fail "no \"${expected}\" in the log"
  fi
done

# --- Stop ---------------------------------------------------------------------------------------
stop_pool
delete_namespaces
echo "PASS: ${scenario}: worker 1 on h2 lost, the pool healed and stopped cleanly"
