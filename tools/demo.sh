#!/usr/bin/env bash
# The main job: sets up what is missing, builds, starts a local pool with the default number of
# workers, runs the quickstart client against it (a batch of tasks, results and timing), and
# stops the pool cleanly, leaving no process behind.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel build //server:mpigate-server //worker:mpigate-worker //examples:quickstart

run_dir=$(mktemp -d /tmp/mpigate-demo-XXXXXX)
fifo="$run_dir/server.out"
mkfifo "$fifo"
# Under mpiexec, so that waiting for mpiexec waits for every process of the pool.
mpiexec_flags=(-n 1 --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpiexec_flags+=(--allow-run-as-root)
mpiexec "${mpiexec_flags[@]}" bazel-bin/server/mpigate-server \
  --listen "unix:$run_dir/gateway.sock" --endpoint-file "$run_dir/endpoint" >"$fifo" &
launcher=$!

exec {out}<"$fifo"
ready=""
while IFS= read -r line <&"$out"; do
  echo "$line"
  case "$line" in *"mpigate-server: ready"*) ready="$line"; break ;; esac
done
if [ -z "$ready" ]; then
  wait "$launcher" || true
  echo "demo: the server did not start" >&2
  exit 1
fi
server_pid=${ready##*pid }

status=0
MPIGATE_ENDPOINT_FILE="$run_dir/endpoint" bazel-bin/examples/quickstart || status=$?

# Stop: SIGTERM to the server itself drains it; mpiexec exits once every process has ended.
kill -TERM "$server_pid"
wait "$launcher"
exec {out}<&-
rm -rf "$run_dir"
echo "demo: pool stopped cleanly"
exit "$status"
