#!/usr/bin/env bash
# The Node client's status() while a lost worker is replaced (node_pool_status_test.js): a real
# mpigate-server with 2 workers whose replacements wait before their hello while a file of the
# test's exists (MPIGATE_TEST_STALL_BEFORE_HELLO, given up after a 3 s bootup timeout), then a
# SIGTERM stop that waits for every process it started.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/node/node_test_lib.sh"

start_server "${dir}/unix" "${runfiles}/server/mpigate-server" --workers=2 \
  --listen="unix:${dir}/s.sock" --endpoint-file="${dir}/endpoint" \
  --worker-binary="${runfiles}/worker/mpigate-worker" --bootup_timeout=3s \
  --worker_env="MPIGATE_TEST_STALL_BEFORE_HELLO=${dir}/stall"

status=0
run_node_test node_pool_status_test.js MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  MPIGATE_SERVER_PID="${server_pid[${dir}/unix]}" MPIGATE_STALL_FILE="${dir}/stall" || status=$?

stop_server "${dir}/unix"
[ "$status" -eq 0 ] || fail "node_pool_status_test.js failed (status ${status})"
