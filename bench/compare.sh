#!/usr/bin/env bash
# The side-by-side benchmark: mpigate, mpi4py.futures and Dask, each with 2 workers, on the
# workloads of the performance issues (throughput, latency, payloads, many clients, idle cost,
# start, a 32-worker pool; and Python functions, mpigate.futures against the peers), and the
# floors of a round trip (bare gRPC, bare MPI). Prints a table with the ratios mpigate / peer,
# mpigate's p50 / bare gRPC's, and the issues' targets (PASS/FAIL), and writes raw.csv,
# results.csv, results.png and each program's log to DIR.
#
#   bench/compare.sh [--mpi=mpich] [--quick] [--python-only] [--out DIR] [--check [BASELINE]]
#
# --mpi=mpich: mpigate built against MPICH (--config=mpich; its pools run in world mode, as MPICH
# cannot spawn); the peers stay as they are (Debian's mpi4py is built against Open MPI).
# --quick: a smoke run with smaller counts. --python-only: only the Python functions workloads.
# --check: then compare the run with BASELINE (default bench/results/baseline.csv): what a figure
# worse than its tolerance needs is measured again (once or twice: two of three decide), and the
# script exits 1 naming each figure whose median is worse than the baseline by more than its
# tolerance (bench/report.py).
# DIR: a new directory under /tmp, printed at the end. The full run takes about 9 minutes on 2
# cores, after waiting (3 minutes at most) for the machine's load average to fall under 1.
#
# Installs the peers (Debian's python3-mpi4py, python3-distributed, gnuplot-nox) if missing,
# builds with Bazel, then runs bench/compare.py with Debian's /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh --bench-peers >&2
build_flags=()
if [ "${1:-}" = --mpi=mpich ]; then
  ./tools/setup.sh --mpich >&2
  build_flags=(--config=mpich)
  shift
elif [ "${1:-}" = --mpi=openmpi ]; then
  shift
fi
# bazel-bin, where compare.py finds the programs, then points at this build's output.
if ! built=$(bazel build "${build_flags[@]}" //server:mpigate-server //worker:mpigate-worker //worker:mpigate-runner \
  //bench:mpigate_bench //bench:stream_api //bench:mpi_pingpong //bench:runner_hop \
  //client/python:mpigate 2>&1); then
  echo "$built" >&2
  exit 1
fi
exec /usr/bin/python3 bench/compare.py "$@"
