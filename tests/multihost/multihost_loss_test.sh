#!/usr/bin/env bash
# A worker lost on another host (issue 24), on hosts made of network namespaces
# (tests/multihost/netns_hosts.sh): mpigate-server in world mode (`mpiexec -n 3 --world`, with
# the parameters that let an Open MPI job outlive one of its processes: --enable-recovery
# --mca orte_abort_on_non_zero_status 0), the gateway and worker 0 on h1, worker 1 on h2. The
# gateway cannot watch h2's process by its pid (another host), so it watches its heartbeats.
# Worker 1's process is killed with SIGKILL: within about a second the gateway logs a WARNING
# naming the worker, its host and pid; `mpigate status` says the pool is degraded and why; the
# pool serves on with worker 0 (`mpigate map echo`); SIGTERM stops it, mpiexec exits 0, and no
# process is left in any namespace.
#
# The scenario, $LOSS_SCENARIO: `idle`, worker 1 killed while it waits for work; or
# `runner_start`, killed while it starts a task runner whose initializer takes seconds (its
# runner was killed, then a task came), when it does not listen to the gateway but must go on
# sending heartbeats.
#
# Where namespaces cannot be made (not root, no CAP_SYS_ADMIN/CAP_NET_ADMIN, no iproute2) the test
# fails, saying why; `bazel test` skips it there (tests/multihost/BUILD.bazel).
set -euo pipefail

scenario="${LOSS_SCENARIO:?idle or runner_start}"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/multihost/netns_hosts.sh"
for file in "$server" "$cli" "$agent"; do
  [ -x "$file" ] || fail "missing runfile ${file}"
done

# --- The service --------------------------------------------------------------------------------
export MPIGATE_NETNS_HOSTS="10.231.0.11=${h1}=h1 10.231.0.12=${h2}=h2"
pool_launch --enable-recovery --mca orte_abort_on_non_zero_status 0
flags=()
# Each task runner's initializer sleeps 3 s (also at boot).
if [ "$scenario" = runner_start ]; then flags=(--initializer=sleep --initargs=3000); fi
start_server --launcher "${dir}/pool" ip netns exec "$hd" "${launch[@]}" \
  "$server" --world --listen=10.231.0.11:0 --endpoint-file="${dir}/endpoint" "${flags[@]}"
target="$(head -n 1 "${dir}/endpoint")"
token="$(sed -n 's/^token=//p' "${dir}/endpoint")"
if [ -n "$token" ]; then export MPIGATE_TOKEN="$token"; fi
status_of() { ip netns exec "$cn" "$cli" --endpoint="$target" status 2>&1; }

# Worker 1: the one mpigate-server process in h2.
victim=""
for pid in $(ip netns pids "$h2"); do
  if [ "$(cat "/proc/${pid}/comm" 2>/dev/null)" = "mpigate-server" ]; then victim="$pid"; fi
done
[ -n "$victim" ] || fail "no mpigate-server process in ${h2}"
before="$(status_of)"
echo "$before"
case "$before" in
  *degraded*) fail "the pool is degraded before any loss" ;;
  *READY*) ;;
  *) fail "mpigate status did not say READY" ;;
esac

# --- The loss -----------------------------------------------------------------------------------
runners_in_h2() {
  local pid
  for pid in $(ip netns pids "$h2"); do
    if [ "$(cat "/proc/${pid}/comm" 2>/dev/null)" = "mpigate-runner" ]; then echo "$pid"; fi
  done
}
if [ "$scenario" = runner_start ]; then
  # Worker 0 busy until this client is stopped, so that the next task goes to worker 1 (lowest
  # idle first).
  ip netns exec "$cn" "$cli" --endpoint="$target" submit sleep 600000 >/dev/null 2>&1 &
  occupier=$!
  one_busy() { case "$(status_of)" in *"1 busy"*) return 0 ;; esac; return 1; }
  wait_for 30 "worker 0 to run the sleep" one_busy
  old_runner="$(runners_in_h2)"
  [ -n "$old_runner" ] || fail "no mpigate-runner process in ${h2}"
  kill -KILL "$old_runner"
  # Worker 1 finds its runner dead when this task comes, and starts another: 3 s of initializer.
  ip netns exec "$cn" "$cli" --endpoint="$target" submit echo x >/dev/null 2>&1 &
  new_runner() { local pid; pid="$(runners_in_h2)"; [ -n "$pid" ] && [ "$pid" != "$old_runner" ]; }
  wait_for 30 "worker 1 to start a new task runner" new_runner
fi
killed_at="$(date -u +%s.%N)"
kill -KILL "$victim"
says_lost() {
  grep -q "WARNING .*worker 1 on h2 (pid ${victim}) was lost: it sent no heartbeat" \
    "${dir}/pool.stderr"
}
wait_for 30 "the gateway's WARNING that worker 1 on h2 was lost" says_lost
line="$(grep -m 1 "worker 1 on h2 (pid ${victim}) was lost" "${dir}/pool.stderr")"
echo "$line"
# The log line's time (UTC, microseconds) against the kill's: how long the loss took to be seen.
logged_at="$(date -u -d "$(echo "$line" | grep -o '^[0-9T:.-]*Z' | tr 'T' ' ' | tr -d 'Z')" +%s.%N)"
awk -v a="$killed_at" -v b="$logged_at" 'BEGIN { printf "seen %.3f s after the kill\n", b - a }'
degraded() {
  local now
  now="$(status_of)"
  case "$now" in
    *"READY, degraded: 1 of 2 workers out of service; worker 1 on h2 (pid ${victim}) was lost"*)
      return 0 ;;
  esac
  return 1
}
wait_for 30 "mpigate status to say the pool is degraded" degraded
status_of
if [ "$scenario" = runner_start ]; then
  # SIGTERM makes `mpigate submit` kill its running task and exit (130): worker 0 is free.
  kill -TERM "$occupier"
  wait "$occupier" || true
fi
# The pool serves on with worker 0.
seq 1 50 >"${dir}/items.txt"
if ! timeout 60 ip netns exec "$cn" "$cli" --endpoint="$target" map echo -q "${dir}/items.txt" \
  >"${dir}/map.txt"; then
  cat "${dir}/pool.stderr" >&2
  fail "mpigate map echo failed after the loss"
fi
cmp -s "${dir}/items.txt" "${dir}/map.txt" || fail "mpigate map echo did not return its items"

# --- Stop ---------------------------------------------------------------------------------------
stop_pool
delete_namespaces
echo "PASS: worker 1 on h2 lost, seen by its silence, the pool served on and stopped cleanly"
