# Sourced by the multi-host tests after tests/shell/test_lib.sh: makes four network namespaces of
# their own, joined by veth pairs to a bridge in the first, on a private subnet that exists only
# inside them (nothing is added to the machine's own network namespace, so nothing can clash with
# its addresses):
#   hd  10.231.0.10  the head node: mpiexec (Open MPI's HNP or Hydra's) runs here, and the bridge
#   h1  10.231.0.11  a worker host
#   h2  10.231.0.12  a worker host
#   c   10.231.0.13  the client
# and sets server, client, cli, agent, mpiexec (the binaries), mpi_family (openmpi or mpich, the
# library the server links), hd, h1, h2, cn (the namespaces' names), namespaces, made, subnet, dir
# (a directory of the test's own), ns_pids (the processes in them), pool_launch (the mpiexec
# command line for a 3-rank pool), and a trap that kills those and deletes the namespaces.
# Where namespaces cannot be made it fails, saying why: Bazel runs these tests only where
# @host_capabilities found that it can (bazel/probe_host.sh), and reports them SKIPPED elsewhere.
cannot() { fail "cannot create network namespaces here: $*"; }

# --- Can we? ---------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] ||
  cannot "not root (uid $(id -u)); ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
command -v ip >/dev/null || cannot "no ip command (Debian package iproute2)"
command -v unshare >/dev/null || cannot "no unshare command (Debian package util-linux)"

server="${runfiles}/server/mpigate-server"
client="${runfiles}/tests/multihost/multihost_client"
cli="${runfiles}/cli/mpigate"
agent="${runfiles}/tests/multihost/netns_rsh.sh"
# The launcher of the MPI library the server links (mpiexec.openmpi or mpiexec.mpich).
launcher_line="$("$server" --mpi_launcher)" || fail "${server} --mpi_launcher failed"
read -r mpi_family mpiexec <<<"$launcher_line"

# Names unique to this run, so that parallel runs never collide (namespace names are global;
# interface names only within their namespace).
tag="mg$$"
hd="${tag}hd" h1="${tag}h1" h2="${tag}h2" cn="${tag}c"
namespaces=("$hd" "$h1" "$h2" "$cn")
made=()
dir="$(mktemp -d "${TEST_TMPDIR:-/tmp}/multihost-XXXXXX")"

# Processes still in our namespaces (all of them ours: only this test puts processes there).
ns_pids() {
  local ns
  for ns in "${made[@]}"; do ip netns pids "$ns" 2>/dev/null || true; done
}
namespaces_empty() { [ -z "$(ns_pids)" ]; }
# SIGTERM to the gateway (mpiexec must then exit 0), then a wait until no process is left in our
# namespaces: every process of the pool ran in them, so nothing was left behind.
stop_pool() {
  stop_server "${dir}/pool"
  wait_for 10 "the namespaces to empty (in them when mpiexec exited: $(ns_pids | tr '\n' ' '))" \
    namespaces_empty
}
# Deletes our namespaces: the trap would, but a failure to delete them is the test's failure.
delete_namespaces() {
  local ns
  for ns in "${made[@]}"; do ip netns del "$ns" || fail "cannot delete namespace ${ns}"; done
  made=()
}
cleanup() {
  local status=$?
  kill_servers
  local pid
  for pid in $(ns_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  local ns
  for ns in "${made[@]}"; do ip netns del "$ns" 2>/dev/null || echo "cannot delete ${ns}" >&2; done
  rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

if ! error="$(ip netns add "$hd" 2>&1)"; then
  cannot "ip netns add failed: ${error}"
fi
made+=("$hd")
if ! error="$(ip netns exec "$hd" unshare --uts hostname mpigate-check 2>&1)"; then
  cannot "no UTS namespace of its own inside one: ${error}"
fi
for ns in "$h1" "$h2" "$cn"; do
  ip netns add "$ns" || fail "ip netns add ${ns}"
  made+=("$ns")
done

# --- The network --------------------------------------------------------------------------------
subnet=10.231.0.0/24
for ns in "${namespaces[@]}"; do ip -n "$ns" link set lo up; done
ip -n "$hd" link add br0 type bridge || cannot "no bridge (no bridge support in the kernel?)"
ip -n "$hd" addr add 10.231.0.10/24 dev br0
ip -n "$hd" link set br0 up
octet=11
for ns in "$h1" "$h2" "$cn"; do
  port="p${ns#"$tag"}"
  ip -n "$hd" link add "$port" type veth peer name eth0 netns "$ns" ||
    cannot "no veth pair (no veth support in the kernel?)"
  ip -n "$hd" link set "$port" master br0 up
  ip -n "$ns" addr add "10.231.0.${octet}/24" dev eth0
  ip -n "$ns" link set eth0 up
  octet=$((octet + 1))
done
echo "namespaces ${namespaces[*]} on ${subnet}"

# pool_launch [--spawn] [OPEN_MPI_ARGS...]: sets `launch` to the mpiexec command line of 3 ranks,
# 2 on h1 (10.231.0.11) and 1 on h2, run from hd; OPEN_MPI_ARGS are added under Open MPI only.
# With --spawn (Open MPI only), of 1 rank on hd itself, beside mpiexec, with a slot on each of h1
# and h2 for the processes it spawns, as `mpiexec -n 1 mpigate-server` runs a pool.
pool_launch() {
  local hosts=10.231.0.11:2,10.231.0.12:1 ranks=3
  if [ "${1:-}" = --spawn ]; then
    shift
    [ "$mpi_family" = openmpi ] || fail "pool_launch --spawn: only Open MPI spawns"
    hosts=10.231.0.10:1,10.231.0.11:1,10.231.0.12:1 ranks=1
  fi
  if [ "$mpi_family" = openmpi ]; then
    local forward=(-x MPIGATE_NETNS_HOSTS)
    # The sanitizer runtimes' options (tools/sanitizers/run_test.sh), so that every rank reports.
    local name
    for name in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS; do
      if [ -n "${!name:-}" ]; then forward+=(-x "$name"); fi
    done
    launch=("$mpiexec" --allow-run-as-root --oversubscribe --host "$hosts" -n "$ranks"
      "$@" --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
      --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet"
      "${forward[@]}")
  else
    # Hydra (MPICH): the agent as its ssh, and the bridge's address for its proxies to call back
    # to (without -iface they call the host's name, which from h1 and h2 nothing answers). Hydra
    # passes the whole environment on, MPIGATE_NETNS_HOSTS and the sanitizers' options included.
    launch=("$mpiexec" -hosts 10.231.0.11:2,10.231.0.12:1 -n 3 -launcher ssh -launcher-exec "$agent"
      -iface br0)
  fi
}
