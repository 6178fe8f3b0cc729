#!/usr/bin/env bash
# Sets up what is missing, builds everything, and runs every test (unit and end to end) under
# AddressSanitizer and UndefinedBehaviorSanitizer (--config=asan-ubsan): one instrumented build, in
# which a report from any process a test starts fails that test. MPIGATE_TEST_CONFIG picks another
# config (tsan, asan, ubsan), or the optimized build when set empty.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
config="${MPIGATE_TEST_CONFIG-asan-ubsan}"
config_flags=()
if [ -n "$config" ]; then config_flags=(--config="$config"); fi

# Every test case that ran, then one closing line with the totals, from the JUnit files Bazel wrote
# in the test logs directory $1 for each test target of the workspace (not for targets since
# removed, whose old files the directory keeps).
summarize() {
  local testlogs="$1"
  bazel query 'tests(//...)' 2>/dev/null | sort | sed -e 's|^//||' -e 's|:|/|' | while read -r target; do
    if [ -f "$testlogs/$target/test.xml" ]; then cat "$testlogs/$target/test.xml"; fi
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
}

bazel test "${config_flags[@]}" //... "$@"
summarize "$(bazel info "${config_flags[@]}" bazel-testlogs 2>/dev/null)"
