#!/usr/bin/env bash
# Sets up what is missing, builds everything, and runs every test (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel test //... "$@"
# Every test case that ran, then one closing line with the totals, from the JUnit files Bazel
# wrote for each test target.
find bazel-testlogs/ -name test.xml -not -path '*/run_*' -not -path '*/shard_*' -print0 | sort -z | xargs -0 cat | awk '
  /<testcase/ {
    match($0, /name="[^"]*"/); name = substr($0, RSTART + 6, RLENGTH - 7)
    match($0, /classname="[^"]*"/); suite = substr($0, RSTART + 11, RLENGTH - 12)
    if (pending != "") print "PASS " pending
    pending = suite "." name; cases++
  }
  /<failure/ { if (pending != "") print "FAIL " pending; pending = ""; failures++ }
  END {
    if (pending != "") print "PASS " pending
    printf "%d passed, %d failed\n", cases - failures, failures
  }'
