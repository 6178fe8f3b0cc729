#!/usr/bin/env bash
# Runs an mpigate pool under mpiexec in the foreground until SIGTERM or SIGINT, then drains it.
#
#   deploy/mpigate-pool.sh [mpigate-server flags...]
#
# Environment:
#   MPIGATE_SERVER   path of mpigate-server (default: this checkout's bazel-bin/server/mpigate-server)
#   MPIEXEC_FLAGS    extra mpiexec flags, e.g. "--host node1:17" for 16 workers on node1
#   MPIGATE_MPIEXEC  the launcher (default: the one that goes with the MPI library mpigate-server
#                    links, as `mpigate-server --mpi_launcher` says: mpiexec.openmpi or
#                    mpiexec.mpich, never Debian's plain `mpiexec`, which may be the other's)
#   MPIGATE_WORKERS  workers under MPICH (default: one per core)
#
# Open MPI: `mpiexec -n 1 mpigate-server`, which spawns its workers. MPICH (Debian's 4.0) cannot
# spawn, so there the pool runs in world mode: `mpiexec -n N+1 mpigate-server --world`.
#
# Why a wrapper: on SIGTERM mpiexec kills its job at once, so tasks in flight would be lost. This
# script forwards the signal to mpigate-server itself, which drains (running tasks finish, queued
# ones are cancelled with a clear error) and exits; mpiexec then exits once every process of the
# pool has ended, and so does this script, with mpiexec's exit code.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
server=${MPIGATE_SERVER:-$here/bazel-bin/server/mpigate-server}
launcher_line=$("$server" --mpi_launcher)
read -r mpi_family mpiexec <<<"$launcher_line"
server_flags=()
if [ "$mpi_family" = openmpi ]; then
  mpiexec_flags=(-n 1 --oversubscribe)
  [ "$(id -u)" -eq 0 ] && mpiexec_flags+=(--allow-run-as-root)
  # By default mpiexec aborts every job it runs, the gateway's too, once a spawned worker ends
  # with a signal or a non-zero status, and without recovery it waited for good after the pool's
  # end once a worker on another host had been lost: the pool could not survive losing a worker.
  [ -n "${OMPI_MCA_orte_abort_on_non_zero_status:-}" ] ||
    mpiexec_flags+=(--enable-recovery --mca orte_abort_on_non_zero_status 0)
else
  mpiexec_flags=(-n "$((${MPIGATE_WORKERS:-$(nproc)} + 1))")
  server_flags+=(--world)
fi
# shellcheck disable=SC2206  # word splitting of user-given flags is intended
mpiexec_flags+=(${MPIEXEC_FLAGS:-})

fifo_dir=$(mktemp -d)
mkfifo "$fifo_dir/out"
"$mpiexec" "${mpiexec_flags[@]}" "$server" "${server_flags[@]}" "$@" >"$fifo_dir/out" &
launcher=$!
server_pid=""
stop() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; else kill -TERM "$launcher"; fi
}
trap stop TERM INT

exec {out}<"$fifo_dir/out"
rm -rf "$fifo_dir"
while IFS= read -r line <&"$out"; do
  echo "$line"
  case "$line" in *"mpigate-server: ready"*) server_pid=${line##*pid }; break ;; esac
done

# A trapped signal interrupts `wait`; wait again until mpiexec has really exited.
status=0
while true; do
  wait "$launcher" && status=0 || status=$?
  kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
