#!/usr/bin/env bash
# What crash isolation costs per task: runs bench/isolation_cost against a 2-worker pool with
# --isolation=process and with --isolation=none, alternating ROUNDS times (default 3) so that
# drift of a shared machine hits both alike, and prints the medians and their ratio.
#
#   bench/isolation.sh [ROUNDS]
#
# Each pool is mpigate-server started directly (an MPI singleton spawning its workers), on a Unix
# socket in a directory of its own, stopped with SIGTERM after each run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
if ! built=$(bazel build //server:mpigate-server //worker:mpigate-worker //worker:mpigate-runner \
  //bench:isolation_cost 2>&1); then
  echo "$built" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/mpigate-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT

run() {  # run MODE: one pool, one measurement line on stdout
  local mode=$1
  rm -f "$dir/out" && mkfifo "$dir/out"
  bazel-bin/server/mpigate-server --workers=2 --isolation="$mode" --listen="unix:$dir/s.sock" \
    --endpoint-file="$dir/endpoint" >"$dir/out" 2>"$dir/err" &
  local server=$!
  # Blocks on the server's stdout until its ready line (open until it exits, so it never blocks).
  exec 3<"$dir/out"
  local line
  while read -r line <&3; do [[ $line == *"ready in"* ]] && break; done
  [[ $line == *"ready in"* ]] || { cat "$dir/err" >&2; exit 1; }
  bazel-bin/bench/isolation_cost --endpoint="unix:$dir/s.sock" --label="$mode"
  kill -TERM "$server"
  wait "$server"
  exec 3<&-
}

for _ in $(seq "$rounds"); do
  run process
  run none
done | tee "$dir/lines" >&2

awk '
  function median(list, n,   i, j, t, a) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { for (k = 2; k <= 5; k++) v[$1, k] = v[$1, k] " " $k }
  END {
    split("sequential echo p50 (us)|sequential echo p99 (us)|map 200k items, chunks of 1000 (items/s)|64 MiB echo (ms)", name, "|")
    printf "%-44s %12s %12s %8s\n", "median of '"$rounds"' runs, 2 workers", "process", "none", "ratio"
    for (k = 2; k <= 5; k++) {
      p = median(v["process", k]); n = median(v["none", k])
      printf "%-44s %12.1f %12.1f %8.2f\n", name[k - 1], p, n, p / n
    }
  }' "$dir/lines"
