# Sourced by the deployment tests of this package: reruns the test under reap_descendants (which
# waits for every orphan the job scripts leave before the test ends), and gives it `runfiles`,
# `fail` and `wait_for`.
if [ "${1:-}" != "--reaping" ]; then
  exec "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/node/reap_descendants" "$0" --reaping
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
