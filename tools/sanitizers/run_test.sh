#!/usr/bin/env bash
# Runs one test under a sanitizer config (.bazelrc: test:sanitizer --run_under).
#
# A test starts more instrumented processes than itself: mpigate-server, the MPI workers that Open
# MPI's daemon spawns for it (their exit status never reaches the test), client programs. Each
# writes its reports to a file of its own in one directory (log_path), and any such file fails the
# test and is printed, whatever the test's own verdict. The suppression files are this script's
# runfiles, which Bazel puts next to it in the test's runfiles; the runtimes get absolute paths,
# since workers may run in another working directory.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
logs="${TEST_UNDECLARED_OUTPUTS_DIR:-${TEST_TMPDIR}}/sanitizer-logs"
mkdir -p "$logs"
for runtime in ASAN UBSAN TSAN; do
  name="${runtime}_OPTIONS"
  export "${name}=${!name:-}:log_path=${logs}/${runtime,,}:log_exe_name=1"
done
export LSAN_OPTIONS="${LSAN_OPTIONS:-}:suppressions=${here}/lsan.supp"
export TSAN_OPTIONS="${TSAN_OPTIONS}:suppressions=${here}/tsan.supp"

# Prints every report and says whether there was one.
reported() {
  local found=1
  for log in "$logs"/*; do
    [ -s "$log" ] || continue
    echo "=== sanitizer report: ${log##*/} ===" >&2
    cat "$log" >&2
    found=0
  done
  return $found
}

# On a timeout Bazel signals the whole process group; the reports may say why the test hung.
trap 'reported; exit 143' TERM

"$@"
status=$?
if reported; then
  echo "FAIL: a process of this test reported a sanitizer finding (above)" >&2
  exit 1
fi
exit $status
