"""Dask side of bench/compare.py: one workload (bench/peers/workloads.py) on a LocalCluster of 2
worker processes with 1 thread each, made by this process.

    /usr/bin/python3 bench/peers/dask_bench.py --workload=latency

Many clients of one pool: `--workload=serve` makes the cluster, prints `serve,address,ADDR,url`
and serves until a line arrives on stdin; each `--workload=clients --scheduler=ADDR` process is
one client of it.
"""

import contextlib
import logging
import warnings

import workloads

workloads.keep_stdio_from_children()
# pylint: disable=wrong-import-position
from distributed import Client, LocalCluster


class DaskPool(workloads.Pool):
    def __init__(self, client):
        self.client = client

    def call(self, fn, *args):
        # pure=False: identical payloads are still separate tasks.
        return self.client.submit(fn, *args, pure=False)

    def results(self, futures):
        return self.client.gather(futures)

    def map(self, payloads, chunksize):
        # Dask's map has no chunksize: one task per chunk of inputs, as mpi4py's map makes them.
        chunks = [payloads[i:i + chunksize] for i in range(0, len(payloads), chunksize)]
        futures = self.client.map(workloads.echo_chunk, chunks, pure=False)
        return [result for chunk in self.client.gather(futures) for result in chunk]


def local_cluster():
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                        dashboard_address=None, silence_logs=logging.ERROR)


@contextlib.contextmanager
def dask_pool(scheduler=None):
    """A client of the pool at `scheduler`, or of a LocalCluster of its own."""
    with contextlib.ExitStack() as stack:
        address = scheduler or stack.enter_context(local_cluster())
        yield DaskPool(stack.enter_context(Client(address)))


def serve():
    with local_cluster() as cluster:
        workloads.emit("serve", "address", cluster.scheduler_address, "url")
        workloads.wait_at_gate("serving")


if __name__ == "__main__":
    # Dask warns about large payloads in task graphs: sending them is the payload workload's point.
    warnings.filterwarnings("ignore", message="Large object")
    args = workloads.parse_args(extra_workloads=["serve"])
    if args.workload == "serve":
        serve()
    else:
        workloads.run(lambda: dask_pool(args.scheduler), args)
