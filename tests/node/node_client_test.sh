#!/usr/bin/env bash
# The Node client example (client/node/mpigate.js) end to end: starts a real mpigate-server with 2
# workers on a Unix socket of its own and one with 1 worker on TCP with TLS requiring client
# certificates (tests/shell/make_test_certs.sh's), runs node_client_test.js (node's built-in test
# runner) against them, then stops the servers with SIGTERM and waits for them and every process
# they started.
# The npm modules are not Bazel's: tools/setup.sh installs them in the source tree
# (node_test_lib.sh); without them this test fails and says to run tools/setup.sh.
set -euo pipefail

source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/shell/test_lib.sh"
source "${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/node/node_test_lib.sh"

pool_command "${runfiles}/server/mpigate-server" 2
start_server "${pool_launcher[@]}" "${dir}/unix" "${pool_command[@]}" \
  --listen="unix:${dir}/s.sock" --endpoint-file="${dir}/endpoint" \
  --worker-binary="${runfiles}/worker/mpigate-worker" --max-tasks-per-worker=1
# And one on TCP with TLS that requires client certificates (signed by the test CA); its endpoint
# file holds its token and tls=1.
"${runfiles}/tests/shell/make_test_certs" "${dir}/certs"
pool_command "${runfiles}/server/mpigate-server" 1
start_server "${pool_launcher[@]}" "${dir}/tls" "${pool_command[@]}" \
  --listen=127.0.0.1:0 --endpoint-file="${dir}/tls_endpoint" \
  --worker-binary="${runfiles}/worker/mpigate-worker" --tls-cert="${dir}/certs/server.pem" \
  --tls-key="${dir}/certs/server.key" --tls-client-ca="${dir}/certs/ca.pem"

# The test finds the servers through their endpoint files, as a user's script would.
status=0
run_node_test node_client_test.js MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  MPIGATE_TLS_ENDPOINT_FILE="${dir}/tls_endpoint" MPIGATE_TEST_CERTS="${dir}/certs" || status=$?
# And the example users run, so that it keeps working.
example_status=0
example="$(env -u MPIGATE_ENDPOINT MPIGATE_ENDPOINT_FILE="${dir}/endpoint" \
  "$node" "${client_dir}/example.js" 2>&1)" || example_status=$?
echo "$example"

stop_server "${dir}/tls"
stop_server "${dir}/unix"
[ "$status" -eq 0 ] || fail "node_client_test.js failed (status ${status})"
[ "$example_status" -eq 0 ] || fail "client/node/example.js failed (status ${example_status})"
case "$example" in
  *"echo: hello from node"*"map (chunksize 4): 0 1 4 9 16 25 36 49 64 81"*"sum 499500"*) ;;
  *) fail "client/node/example.js did not print the results it should" ;;
esac
echo "PASS: node_client_test.js and example.js passed; both mpigate-servers stopped cleanly"
