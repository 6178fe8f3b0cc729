#!/usr/bin/env bash
# Sets up what is missing, builds everything, and runs every test (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
bazel test //... "$@"
# One closing line with the totals, from the JUnit files Bazel wrote for each test target.
find bazel-testlogs/ -name test.xml -print0 | xargs -0 cat | awk '
  /<testcase/ { cases++ }
  /<failure/ { failures++ }
  END { printf "%d passed, %d failed\n", cases - failures, failures }'
