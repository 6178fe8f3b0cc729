#!/usr/bin/env bash
# Multi-host on one machine. Makes four network namespaces of its own, joined by veth pairs to a
# bridge in the first, on a private subnet that exists only inside them (nothing is added to the
# machine's own network namespace, so nothing can clash with its addresses):
#   hd  10.231.0.10  the head node: mpiexec (Open MPI's HNP or Hydra's) runs here, and the bridge
#   h1  10.231.0.11  a worker host, 2 slots: rank 0 (the gateway) and rank 1 (a worker)
#   h2  10.231.0.12  a worker host, 1 slot: rank 2 (a worker)
#   c   10.231.0.13  the client
# Open MPI launches its daemons onto h1 and h2 through netns_rsh.sh (its rsh agent), which runs
# them in the host's namespace with a host name of its own (a UTS namespace), and its ranks talk
# over TCP (btl tcp,self; oob and btl restricted to the subnet). Built against MPICH, Hydra starts
# its proxies there through the same script (-launcher ssh -launcher-exec). mpigate-server runs in
# world mode (`mpiexec -n 3 mpigate-server --world`), listening on TCP at h1's address; from c,
# multihost_client checks that the workers run on h1 and h2 (a broadcast `exec` of hostname) and
# that 300 echo tasks come back right, and the CLI (`mpigate status`, `mpigate map echo`) works over
# TCP too. Then SIGTERM to rank 0 drains and stops the service; mpiexec must exit 0, no process may
# be left in any namespace, and the namespaces are deleted (also on failure: trap).
#
# Where namespaces cannot be made (not root, no CAP_SYS_ADMIN/CAP_NET_ADMIN, no iproute2) the test
# fails, saying why; `bazel test` skips it there (tests/multihost/BUILD.bazel).
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/multihost/netns_hosts.sh"
for file in "$server" "$client" "$cli" "$agent"; do
  [ -x "$file" ] || fail "missing runfile ${file}"
done

# --- The service --------------------------------------------------------------------------------
# The agent maps each host address to its namespace and host name.
export MPIGATE_NETNS_HOSTS="10.231.0.11=${h1}=h1 10.231.0.12=${h2}=h2"
pool_launch
start_server --launcher "${dir}/pool" ip netns exec "$hd" "${launch[@]}" \
  "$server" --world --allow-exec --listen=10.231.0.11:0 --endpoint-file="${dir}/endpoint" \
  --max-tasks-per-worker=4
gateway_pid="${server_pid[${dir}/pool]}"
# The gateway (rank 0) runs in h1.
case " $(ip netns pids "$h1" | tr '\n' ' ') " in
  *" ${gateway_pid} "*) ;;
  *) fail "the gateway (pid ${gateway_pid}) is not in namespace ${h1}" ;;
esac
target="$(head -n 1 "${dir}/endpoint")"
[ "$target" != "${target#10.231.0.11:}" ] || fail "the endpoint file names ${target}, not h1's address"
# A service on TCP may require a bearer token, which its endpoint file then holds.
token="$(sed -n 's/^token=//p' "${dir}/endpoint")"
if [ -n "$token" ]; then export MPIGATE_TOKEN="$token"; fi

# --- The clients, from namespace c, over TCP ----------------------------------------------------
status=0
ip netns exec "$cn" "$client" --endpoint="$target" --hosts=h1,h2 --tasks=300 || status=$?
cli_status=0
ip netns exec "$cn" "$cli" --endpoint="$target" status >"${dir}/status.txt" 2>&1 || cli_status=$?
cat "${dir}/status.txt"
seq 1 200 >"${dir}/items.txt"
map_status=0
ip netns exec "$cn" "$cli" --endpoint="$target" map echo -q "${dir}/items.txt" \
  >"${dir}/map.txt" || map_status=$?

# --- Stop ---------------------------------------------------------------------------------------
stop_pool

if [ "$status" -ne 0 ]; then
  cat "${dir}/pool.stderr" >&2
  fail "multihost_client failed (status ${status})"
fi
[ "$cli_status" -eq 0 ] || fail "mpigate status failed (status ${cli_status})"
grep -q "READY" "${dir}/status.txt" || fail "mpigate status did not say READY"
[ "$map_status" -eq 0 ] || fail "mpigate map echo failed (status ${map_status})"
cmp -s "${dir}/items.txt" "${dir}/map.txt" || fail "mpigate map echo did not return its items"
# The log, checked once mpiexec has exited: its ranks' stdout and stderr reach it separately, so
# the log may trail the ready line.
for expected in "worker 0 up on h1" "worker 1 up on h2" "stopped cleanly"; do
  if ! grep -q "$expected" "${dir}/pool.stderr"; then
    cat "${dir}/pool.stderr" >&2
    fail "no \"${expected}\" in the log"
  fi
done

delete_namespaces
echo "PASS: workers on h1 and h2 over TCP, clients from another namespace, clean stop"
