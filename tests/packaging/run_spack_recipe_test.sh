#!/usr/bin/env bash
# Runs spack_recipe_test.py under Debian's /usr/bin/python3 on the runfiles.
set -euo pipefail
root="$TEST_SRCDIR/mpigate"
exec /usr/bin/python3 "$root/tests/packaging/spack_recipe_test.py" "$root"
