# Sourced by the shell tests (tests/node, tests/deploy, tests/multihost), with bash's
# `set -euo pipefail` already on:
#
#   source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
#
# Reruns the test under reap_descendants, which waits for every orphan the test leaves (an
# mpigate-server's MPI daemon and workers, a job script's children) before the test ends, and
# gives it `runfiles`, `fail`, `wait_for`, `await_ready_line`, and `start_server` / `stop_server` /
# `kill_servers` for mpigate-servers it runs. A test using these has //tests/shell:test_lib in
# its deps.
if [ "${1:-}" != "--reaping" ]; then
  exec "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/reap_descendants" "$0" --reaping
fi

runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# Polls for an event, up to a deadline: `wait_for SECONDS WHAT COMMAND...`.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds} s waiting for ${what}"
    sleep 0.1
  done
}

# Reads lines from file descriptor FD up to mpigate-server's ready line, echoing each after
# PREFIX: `await_ready_line FD [PREFIX]`. Sets `ready_line` (empty if FD ended first, and then
# returns 1) and `lines_to_ready` (every line read, the ready line last).
await_ready_line() {
  local fd=$1 prefix=${2:-} line
  ready_line=""
  lines_to_ready=""
  while IFS= read -r line <&"$fd"; do
    echo "${prefix}${line}"
    lines_to_ready+="${line}"$'\n'
    case "$line" in
      "mpigate-server: ready"*)
        ready_line="$line"
        return 0
        ;;
    esac
  done
  return 1
}

# Servers started by start_server, by NAME: the pid of the command it ran, the pid of the
# mpigate-server (its ready line's), and the descriptor its stdout is read from.
declare -A server_command_pid=() server_pid=() server_stdout_fd=()

# Runs an mpigate-server in the background and waits for its ready line:
#   start_server [--launcher] NAME COMMAND [ARG...]
# NAME is a path prefix of the server's own: its stdout comes through a FIFO at NAME.stdout, which
# stays open on our side until the server has exited so that its prints never fail, and its stderr
# goes to NAME.stderr, so that nothing blocks on it; both are echoed, stderr if it fails. Fails if
# the command exits before the ready line, or if the ready line's pid is not the command's: with
# --launcher, COMMAND starts the server rather than being it (mpiexec), and any pid goes. Sets
# server_pid[NAME] (the ready line's) and `ready_line`.
start_server() {
  local launcher=false
  if [ "$1" = --launcher ]; then
    launcher=true
    shift
  fi
  local name=$1
  shift
  mkfifo "${name}.stdout"
  "$@" >"${name}.stdout" 2>"${name}.stderr" &
  server_command_pid[$name]=$!
  local fd
  exec {fd}<"${name}.stdout"
  server_stdout_fd[$name]=$fd
  if ! await_ready_line "$fd"; then
    cat "${name}.stderr" >&2
    fail "mpigate-server ${name##*/} exited before its ready line"
  fi
  server_pid[$name]="${ready_line##*, pid }"
  [ "$launcher" = true ] || [ "${server_pid[$name]}" = "${server_command_pid[$name]}" ] ||
    fail "mpigate-server ${name##*/}: the ready line's pid is not ${server_command_pid[$name]}"
}

# Sets `pool_command` (an array) to the command that starts mpigate-server SERVER with WORKERS
# workers, and `pool_launcher` to the start_server flag it needs: the server itself (spawn mode),
# or, built against MPICH, which cannot spawn, the build's mpiexec running it in world mode.
pool_command() {
  local server=$1 workers=$2 line family mpiexec
  line="$("$server" --mpi_launcher)" || fail "${server} --mpi_launcher failed"
  read -r family mpiexec <<<"$line"
  if [ "$family" = openmpi ]; then
    pool_command=("$server" "--workers=${workers}")
    pool_launcher=()
  else
    pool_command=("$mpiexec" -n "$((workers + 1))" "$server" --world "--workers=${workers}")
    pool_launcher=(--launcher)
  fi
}

# Stops the server NAME of start_server with SIGTERM (to the server, not to a launcher), waits
# for the command it ran and echoes the rest of its stdout. Fails, with its stderr, unless the
# command exits 0.
stop_server() {
  local name=$1
  kill -TERM "${server_pid[$name]}"
  # A stop that hangs fails the test, saying what still runs, instead of outlasting its timeout.
  local patience=180
  if ! timeout "$patience" tail --pid="${server_command_pid[$name]}" -s 0.1 -f /dev/null; then
    still_running "mpigate-server ${name##*/} had not exited ${patience} s after SIGTERM" "$name"
  fi
  local status=0
  wait "${server_command_pid[$name]}" || status=$?
  unset "server_command_pid[$name]"
  # The rest of its stdout, to its end: every process holding the FIFO has exited or closed it.
  local fd=${server_stdout_fd[$name]}
  if ! timeout "$patience" cat <&"$fd"; then
    still_running "${patience} s after mpigate-server ${name##*/} exited, a process it started \
still held its stdout" "$name"
  fi
  exec {fd}<&-
  if [ "$status" -ne 0 ]; then
    cat "${name}.stderr" >&2
    fail "mpigate-server ${name##*/} exited with status ${status} after SIGTERM"
  fi
}

# Fails with WHAT, the server NAME's stderr and every process still running: `still_running WHAT
# NAME`.
still_running() {
  cat "${2}.stderr" >&2
  echo "processes still running:" >&2
  ps -eo pid,ppid,stat,etime,args --forest >&2
  fail "$1"
}

# Kills every server of start_server that stop_server has not stopped: for a test's EXIT trap, so
# that a test that failed leaves no server behind.
kill_servers() {
  local pid
  for pid in "${server_command_pid[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
