# Sourced by the Node client's tests after tests/shell/test_lib.sh: finds node and the Node client
# in the source tree (next to the npm modules tools/setup.sh installs there; Bazel's runfile
# client/node/package.json links to it), makes `dir` (a short directory of the test's own: Unix
# socket paths are limited to 107 bytes), and sets a trap that stops the test's servers and removes
# it. Sets node, client_dir, dir.
node="$(command -v node)" || fail "no node on PATH (/usr/bin/node): run tools/setup.sh"
client_dir="$(dirname "$(readlink -f "${runfiles}/client/node/package.json")")"
for module in @grpc/grpc-js @grpc/proto-loader; do
  [ -f "${client_dir}/node_modules/${module}/package.json" ] ||
    fail "the Node client's npm modules are missing (no ${client_dir}/node_modules/${module}):" \
      "run tools/setup.sh, which runs npm ci in client/node"
done

dir="$(mktemp -d /tmp/mpigate-node-XXXXXX)"
cleanup() {
  kill_servers
  rm -rf "$dir"
}
trap cleanup EXIT

# run_node_test FILE [NAME=VALUE...]: runs the test file FILE (under tests/node) with node's
# built-in test runner, with the variables given and MPIGATE_NODE_CLIENT (the client's
# mpigate.js) and MPIGATE_PROTO_DIR, and without the MPIGATE_ variables that would point it
# elsewhere. Its cases go to the log, and to the JUnit file Bazel reads when it asks for one.
# Returns node's status.
run_node_test() {
  local file="$1"
  shift
  local reporters=(--test-reporter=spec --test-reporter-destination=stdout)
  if [ -n "${XML_OUTPUT_FILE:-}" ]; then
    reporters+=(--test-reporter=junit --test-reporter-destination="${XML_OUTPUT_FILE}")
  fi
  env -u MPIGATE_ENDPOINT -u MPIGATE_TOKEN -u MPIGATE_TLS_CA -u MPIGATE_TLS_CERT \
    -u MPIGATE_TLS_KEY "$@" MPIGATE_NODE_CLIENT="${client_dir}/mpigate.js" \
    MPIGATE_PROTO_DIR="${runfiles}/proto" \
    "$node" "${reporters[@]}" "${runfiles}/tests/node/${file}"
}
