"""mpigate.futures side of bench/compare.py's Python workloads: one workload
(bench/peers/workloads.py, `python` in compare.py's runs) on an MPIPoolExecutor of 2 workers of the
mpigate service at --endpoint, the same no-op Python function as mpi4py_bench.py and dask_bench.py.

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 \\
        bench/peers/mpigate_futures_bench.py --workload=python --endpoint=unix:/tmp/x/s.sock

The service is a shared one, started by compare.py (the executor would start a private one if
no endpoint were given); its workers run the function in their task runners' interpreters.
"""

import contextlib
import os

import workloads

workloads.keep_stdio_from_children()
# pylint: disable=wrong-import-position
from mpigate.futures import MPIPoolExecutor


@contextlib.contextmanager
def mpigate_pool(endpoint):
    # The workers import workloads.echo from this directory, as mpi4py's do: by reference.
    with MPIPoolExecutor(max_workers=2, endpoint=endpoint,
                         path=[os.path.dirname(os.path.abspath(__file__))]) as executor:
        yield workloads.ExecutorPool(executor)


if __name__ == "__main__":
    args = workloads.parse_args(extra_workloads=[])
    if not args.endpoint:
        raise SystemExit("--endpoint is required: the mpigate service to run on")
    workloads.run(lambda: mpigate_pool(args.endpoint), args)
