#!/usr/bin/env bash
# The Node client's status() while a lost worker is replaced (node_pool_status_test.js): a real
# mpigate-server with 2 workers whose replacements wait before their hello while a file of the
# test's exists (MPIGATE_TEST_STALL_BEFORE_HELLO, given up after a 3 s bootup timeout), then a
# SIGTERM stop that waits for every process it started.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"

node="$(command -v node)" || fail "no node on PATH (/usr/bin/node): run tools/setup.sh"
client_dir="$(dirname "$(readlink -f "${runfiles}/client/node/package.json")")"
[ -f "${client_dir}/node_modules/@grpc/grpc-js/package.json" ] ||
  fail "the Node client's npm modules are missing: run tools/setup.sh"

dir="$(mktemp -d /tmp/mpigate-node-XXXXXX)"
cleanup() {
  kill_servers
  rm -rf "$dir"
}
trap cleanup EXIT

start_server "${dir}/unix" "${runfiles}/server/mpigate-server" --workers=2 \
  --listen="unix:${dir}/s.sock" --endpoint-file="${dir}/endpoint" \
  --worker-binary="${runfiles}/worker/mpigate-worker" --bootup_timeout=3s \
  --worker_env="MPIGATE_TEST_STALL_BEFORE_HELLO=${dir}/stall"

reporters=(--test-reporter=spec --test-reporter-destination=stdout)
if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  reporters+=(--test-reporter=junit --test-reporter-destination="${XML_OUTPUT_FILE}")
fi
status=0
env -u MPIGATE_ENDPOINT -u MPIGATE_TOKEN MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  MPIGATE_SERVER_PID="${server_pid[${dir}/unix]}" MPIGATE_STALL_FILE="${dir}/stall" \
  MPIGATE_NODE_CLIENT="${client_dir}/mpigate.js" MPIGATE_PROTO_DIR="${runfiles}/proto" \
  "$node" "${reporters[@]}" "${runfiles}/tests/node/node_pool_status_test.js" || status=$?

stop_server "${dir}/unix"
[ "$status" -eq 0 ] || fail "node_pool_status_test.js failed (status ${status})"
