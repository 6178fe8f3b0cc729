#!/usr/bin/env bash
# The main job: sets up what is missing, builds, starts a local pool with the default number of
# workers (deploy/mpigate-pool.sh, under mpiexec), runs the quickstart client against it (a batch
# of tasks, results and timing) and a Python ensemble through mpigate.futures (checked against a
# serial run), and stops the pool cleanly, leaving no process behind.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel build //server:mpigate-server //worker:mpigate-worker //examples:quickstart \
  //client/python:mpigate

run_dir=$(mktemp -d /tmp/mpigate-demo-XXXXXX)
mkfifo "$run_dir/pool.out"
deploy/mpigate-pool.sh --listen "unix:$run_dir/gateway.sock" \
  --endpoint-file "$run_dir/endpoint" >"$run_dir/pool.out" &
pool=$!
exec {out}<"$run_dir/pool.out"
ready=""
while IFS= read -r line <&"$out"; do
  echo "$line"
  case "$line" in *"mpigate-server: ready"*) ready=yes; break ;; esac
done
if [ -z "$ready" ]; then
  wait "$pool" || true
  echo "demo: the pool did not start" >&2
  exit 1
fi

status=0
MPIGATE_ENDPOINT_FILE="$run_dir/endpoint" bazel-bin/examples/quickstart || status=$?
if [ "$status" -eq 0 ]; then
  MPIGATE_ENDPOINT_FILE="$run_dir/endpoint" PYTHONPATH=client/python:bazel-bin/client/python \
    /usr/bin/python3 examples/python/ensemble.py --batches 16 --trajectories 2000 --check ||
    status=$?
fi

# The pool script drains the server and returns once every process of the pool has exited.
kill -TERM "$pool"
wait "$pool"
exec {out}<&-
rm -rf "$run_dir"
echo "demo: pool stopped cleanly"
exit "$status"
