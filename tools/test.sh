#!/usr/bin/env bash
# Sets up what is missing, builds everything (with Open MPI also with clang, --config=clang-tsa, to
# check the thread-safety annotations), and runs every test (unit and end to end) under
# AddressSanitizer and UndefinedBehaviorSanitizer (--config=asan-ubsan): one instrumented build, in
# which a report from any process a test starts fails that test. MPIGATE_TEST_CONFIG picks another
# config (tsan, asan, ubsan), or the optimized build when set empty.
#
# --mpich (or MPIGATE_MPI=mpich) runs the suite built against MPICH instead of Open MPI
# (--config=mpich), in the optimized build unless MPIGATE_TEST_CONFIG says otherwise; targets
# tagged openmpi-only are left out (README, "MPI libraries", says which and why).
set -euo pipefail
cd "$(dirname "$0")/.."
mpi="${MPIGATE_MPI:-openmpi}"
if [ "${1:-}" = --mpich ]; then
  mpi=mpich
  shift
fi
config_flags=()
case "$mpi" in
  openmpi)
    ./tools/setup.sh
    config="${MPIGATE_TEST_CONFIG-asan-ubsan}"
    if [ -n "$config" ]; then config_flags=(--config="$config"); fi
    ;;
  mpich)
    ./tools/setup.sh --mpich
    config="${MPIGATE_TEST_CONFIG-}"
    config_flags=(--config=mpich)
    # Both configs name the output directory; this one names it after both.
    if [ -n "$config" ]; then config_flags+=(--config="$config" --platform_suffix="-$config-mpich"); fi
    ;;
  *) echo "test.sh: MPIGATE_MPI is openmpi or mpich, not '$mpi'" >&2; exit 2 ;;
esac

# Every test case that ran (PASS, FAIL) or skipped itself (SKIP), then one closing line with the
# totals, from the JUnit files Bazel wrote in the test logs directory $1 for each test target of
# the query $2 (not for targets since removed or left out, whose old files the directory keeps).
# Targets this machine cannot run (bazel/host_capabilities.bzl) Bazel's own summary lists as
# SKIPPED.
summarize() {
  local testlogs="$1"
  bazel query "$2" 2>/dev/null | sort | sed -e 's|^//||' -e 's|:|/|' | while read -r target; do
    if [ -f "$testlogs/$target/test.xml" ]; then cat "$testlogs/$target/test.xml"; fi
  done | awk '
    /<testcase/ {
      match($0, /name="[^"]*"/); name = substr($0, RSTART + 6, RLENGTH - 7)
      match($0, /classname="[^"]*"/); suite = substr($0, RSTART + 11, RLENGTH - 12)
      if (pending != "") print "PASS " pending
      pending = suite "." name; cases++
    }
    /<failure/ { if (pending != "") print "FAIL " pending; pending = ""; failures++ }
    /<skipped/ { if (pending != "") print "SKIP " pending; pending = ""; skips++ }
    END {
      if (pending != "") print "PASS " pending
      printf "%d passed, %d failed, %d skipped\n", cases - failures - skips, failures, skips
    }'
}

# The thread-safety annotations, checked by clang (.bazelrc's clang-tsa): built, not run.
if [ "$mpi" = openmpi ]; then bazel build --config=clang-tsa //...; fi
bazel test "${config_flags[@]}" //... "$@"
targets='tests(//...)'
if [ "$mpi" = mpich ]; then targets='tests(//...) except attr(tags, "openmpi-only", tests(//...))'; fi
summarize "$(bazel info "${config_flags[@]}" bazel-testlogs 2>/dev/null)" "$targets"
if [ "$mpi" = mpich ]; then
  echo "not run on MPICH (tagged openmpi-only):" \
    $(bazel query 'attr(tags, "openmpi-only", tests(//...))' 2>/dev/null | sort)
fi
