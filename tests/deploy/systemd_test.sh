#!/usr/bin/env bash
# deploy/systemd/mpigate.service: the unit's key settings, `systemd-analyze verify --user` when
# systemd-analyze is installed (it says why when not), and the unit's ExecStart run as systemd
# would run it (%h and %t expanded, the RuntimeDirectory made, $MPIGATE_FLAGS split into
# arguments): the pool comes up with its endpoint file in %t/mpigate, answers `mpigate status`,
# and on SIGTERM (KillSignal) drains and exits 0 within TimeoutStopSec, the endpoint file removed
# and no process left behind.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
unit="${runfiles}/deploy/systemd/mpigate.service"
setting() { sed -n "s/^$1=//p" "$unit"; }
expect() {
  [ "$(setting "$1")" = "$2" ] || fail "mpigate.service: $1 is '$(setting "$1")', not '$2'"
}

expect KillSignal SIGTERM
expect KillMode mixed
expect Restart on-failure
expect RuntimeDirectory mpigate
expect WantedBy default.target
exec_start=$(setting ExecStart)
case "$exec_start" in
  "%h/.local/bin/mpigate-server "*"--listen=unix:%t/mpigate/"*"--endpoint-file=%t/mpigate/endpoint"*) ;;
  *) fail "ExecStart does not run mpigate-server on a socket and endpoint file in %t: $exec_start" ;;
esac
grace=$(sed -n 's/.*--drain-grace=\([0-9]*\)s.*/\1/p' <<<"$exec_start")
stop_timeout=$(setting TimeoutStopSec)
[ -n "$grace" ] && [[ "$stop_timeout" =~ ^[0-9]+$ ]] && [ "$stop_timeout" -gt "$((grace + 10))" ] ||
  fail "TimeoutStopSec (${stop_timeout}) must exceed --drain-grace (${grace:-?} s) by more than 10 s"

dir="$(mktemp -d /tmp/mpigate-systemd-XXXXXX)"
cleanup() {
  kill_servers
  rm -rf "$dir"
}
trap cleanup EXIT
# A home with the server installed where the unit expects it, and a runtime directory.
home="${dir}/home"
runtime="${dir}/run"
mkdir -p "${home}/.local/bin" "$runtime"
chmod 700 "$runtime"
ln -s "${runfiles}/server/mpigate-server" "${home}/.local/bin/mpigate-server"

if analyze=$(command -v systemd-analyze); then
  verify_status=0
  verify_output=$(HOME="$home" XDG_RUNTIME_DIR="$runtime" "$analyze" verify --user "$unit" 2>&1) ||
    verify_status=$?
  # verify only warns about a setting it cannot parse: any output fails too.
  [ "$verify_status" -eq 0 ] && [ -z "$verify_output" ] ||
    fail "systemd-analyze verify --user (status ${verify_status}): ${verify_output}"
  echo "systemd-analyze verify --user: no complaint"
else
  echo "NOTE: systemd-analyze is not installed (package systemd): only the unit's key settings" \
    "were checked, not the whole unit"
fi

# ExecStart as systemd runs it.
mkdir -m 700 "${runtime}/mpigate"
command_line=${exec_start//%h/$home}
command_line=${command_line//%t/$runtime}
read -r -a argv <<<"${command_line/\$MPIGATE_FLAGS/--workers=2 --max-tasks-per-worker=1}"
[ "${#argv[@]}" -ge 4 ] || fail "ExecStart split into too few words: ${argv[*]}"
start_server "${dir}/unit" env MPIGATE_RUN_DIR="${runtime}/mpigate" OMPI_ALLOW_RUN_AS_ROOT=1 \
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "${argv[@]}"
endpoint="${runtime}/mpigate/endpoint"
[ -f "$endpoint" ] || fail "no endpoint file at ${endpoint}"
[ "$(head -n 1 "$endpoint")" = "unix:${runtime}/mpigate/gateway.sock" ] ||
  fail "the endpoint file names $(head -n 1 "$endpoint"), not the unit's socket"
status=$(env -u MPIGATE_ENDPOINT -u MPIGATE_ENDPOINT_FILE MPIGATE_RUN_DIR="${runtime}/mpigate" \
  "${runfiles}/cli/mpigate" status) || fail "mpigate status failed against the unit's pool"
grep -q "^workers *2:" <<<"$status" || fail "mpigate status does not show 2 workers: ${status}"

stop_server "${dir}/unit"
[ ! -e "$endpoint" ] || fail "the endpoint file is still there after the stop"
[ ! -e "${runtime}/mpigate/gateway.sock" ] || fail "the socket is still there after the stop"
echo "PASS: mpigate.service verified and its ExecStart served and drained on SIGTERM"
