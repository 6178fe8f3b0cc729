#!/usr/bin/env bash
# Sets up what is missing, builds everything, and runs every test (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel test //... "$@"
# Every test case that ran, then one closing line with the totals, from the JUnit files Bazel
# wrote for each test target of the workspace (not for targets since removed, whose old files
# bazel-testlogs keeps).
bazel query 'tests(//...)' 2>/dev/null | sort | sed -e 's|^//||' -e 's|:|/|' | while read -r target; do
  if [ -f "bazel-testlogs/$target/test.xml" ]; then cat "bazel-testlogs/$target/test.xml"; fi
done | awk '
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
