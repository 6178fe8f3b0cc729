#!/usr/bin/env bash
# Runs one Python test file of this package (its runfiles path is the first argument) under
# Debian's /usr/bin/python3: the interpreter that has python3-grpcio and python3-protobuf. The
# `python3` first on PATH may be another one, so it is never used. The mpigate package of
# //client/python (with its generated mpigate.v1) and this directory's helpers are put on the path.
set -euo pipefail

root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
export PYTHONPATH="${root}/client/python:${root}/tests/python"
# Nothing is written into the runfiles tree.
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -u "${root}/$1" "${@:2}"
