"""mpi4py.futures side of bench/compare.py: one workload (bench/peers/workloads.py) on an
MPIPoolExecutor of 2 workers, which this process spawns as an MPI singleton.

    OMPI_ALLOW_RUN_AS_ROOT=1 ... /usr/bin/python3 bench/peers/mpi4py_bench.py --workload=latency

It has no "many clients" workload: an MPIPoolExecutor belongs to the one process that made it.
"""

import contextlib
import os

import workloads

workloads.keep_stdio_from_children()
# pylint: disable=wrong-import-position
from mpi4py.futures import MPIPoolExecutor


@contextlib.contextmanager
def mpi4py_pool():
    # The workers import workloads.echo from this directory.
    with MPIPoolExecutor(max_workers=2, path=[os.path.dirname(__file__)]) as executor:
        yield workloads.ExecutorPool(executor)


if __name__ == "__main__":
    workloads.run(mpi4py_pool, workloads.parse_args(extra_workloads=[]))
