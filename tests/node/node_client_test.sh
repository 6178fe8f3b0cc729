#!/usr/bin/env bash
# The Node client example (client/node/mpigate.js) end to end: starts a real mpigate-server with 2
# workers on a Unix socket of its own, runs node_client_test.js (node's built-in test runner)
# against it, then stops the server with SIGTERM and waits for it and every process it started.
#
# The npm modules are not Bazel's: tools/setup.sh installs them in client/node/node_modules of the
# source tree. The runfile client/node/package.json links to the source tree's, whose directory
# therefore holds them; without them this test fails and says to run tools/setup.sh.
set -euo pipefail

# Under reap_descendants, which waits for the server's descendants once they are orphaned.
if [ "${1:-}" != "--reaping" ]; then
  exec "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/node/reap_descendants" "$0" --reaping
fi

runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

node="$(command -v node)" || fail "no node on PATH (/usr/bin/node): run tools/setup.sh"
client_dir="$(dirname "$(readlink -f "${runfiles}/client/node/package.json")")"
for module in @grpc/grpc-js @grpc/proto-loader; do
  [ -f "${client_dir}/node_modules/${module}/package.json" ] ||
    fail "the Node client's npm modules are missing (no ${client_dir}/node_modules/${module}):" \
      "run tools/setup.sh, which runs npm ci in client/node"
done

# A short directory of our own: Unix socket paths are limited to 107 bytes.
dir="$(mktemp -d /tmp/mpigate-node-XXXXXX)"
server_pid=""
cleanup() {
  # Only if the test failed before stopping the server: it must not outlive the test.
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# The ready line comes on stdout, through a FIFO that stays open on our side until the server has
# exited, so that its prints never fail; stderr goes to a file, so that nothing blocks on it.
mkfifo "${dir}/stdout"
"${runfiles}/server/mpigate-server" --workers=2 --listen="unix:${dir}/s.sock" \
  --endpoint-file="${dir}/endpoint" --worker-binary="${runfiles}/worker/mpigate-worker" \
  --max-tasks-per-worker=1 >"${dir}/stdout" 2>"${dir}/stderr" &
server_pid=$!
exec 3<"${dir}/stdout"
ready=""
while IFS= read -r line <&3; do
  echo "$line"
  case "$line" in
    "mpigate-server: ready"*) ready="$line"; break ;;
  esac
done
if [ -z "$ready" ]; then
  cat "${dir}/stderr" >&2
  fail "mpigate-server exited before its ready line"
fi
[ "${ready##*, pid }" = "$server_pid" ] || fail "the ready line's pid is not ${server_pid}"

# The test finds the server through its endpoint file, as a user's script would. Its cases go to
# the log, and to the JUnit file Bazel reads when it asks for one.
reporters=(--test-reporter=spec --test-reporter-destination=stdout)
if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  reporters+=(--test-reporter=junit --test-reporter-destination="${XML_OUTPUT_FILE}")
fi
status=0
env -u MPIGATE_ENDPOINT MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  MPIGATE_NODE_CLIENT="${client_dir}/mpigate.js" MPIGATE_PROTO_DIR="${runfiles}/proto" \
  "$node" "${reporters[@]}" "${runfiles}/tests/node/node_client_test.js" || status=$?
# And the example users run, so that it keeps working.
example_status=0
example="$(env -u MPIGATE_ENDPOINT MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  "$node" "${client_dir}/example.js" 2>&1)" || example_status=$?
echo "$example"

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
# The rest of its stdout, to its end: every process holding the FIFO has exited or closed it.
cat <&3
exec 3<&-
if [ "$server_status" -ne 0 ]; then
  cat "${dir}/stderr" >&2
  fail "mpigate-server exited with status ${server_status} after SIGTERM"
fi
[ "$status" -eq 0 ] || fail "node_client_test.js failed (status ${status})"
[ "$example_status" -eq 0 ] || fail "client/node/example.js failed (status ${example_status})"
case "$example" in
  *"echo: hello from node"*"map (chunksize 4): 0 1 4 9 16 25 36 49 64 81"*"sum 499500"*) ;;
  *) fail "client/node/example.js did not print the results it should" ;;
esac
echo "PASS: node_client_test.js and example.js passed; mpigate-server stopped cleanly"
