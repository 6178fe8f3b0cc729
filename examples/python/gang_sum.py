"""The distributed sum as a Python gang on an mpigate pool (IPython's parallel "sum" demo, and
mpi4py's run_cpi.py): one task runs on several workers at once, which share an MPI communicator.

Each rank of the gang sums its share of 0..N-1 and computes its share of the midpoint rule for
pi; mpi4py's allreduce over mpigate.futures.get_comm_workers() combines them, and rank 0's value
is the task's result.

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 \
        examples/python/gang_sum.py --ranks 2 --n 1000000

The pool: $MPIGATE_ENDPOINT, the endpoint file, or a private one of --ranks workers.
"""

import argparse
import math

from mpigate import futures


def distributed_sum_and_pi(n, intervals):
    comm = futures.get_comm_workers()
    rank, size = comm.Get_rank(), comm.Get_size()
    part = sum(range(rank, n, size))
    h = 1.0 / intervals
    pi_part = h * sum(4.0 / (1.0 + (h * (i + 0.5)) ** 2) for i in range(rank, intervals, size))
    return size, comm.allreduce(part), comm.allreduce(pi_part)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="workers in the gang")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--intervals", type=int, default=100_000)
    args = parser.parse_args()

    with futures.MPIPoolExecutor(args.ranks) as executor:
        future = executor.submit(distributed_sum_and_pi, args.n, args.intervals,
                                 gang_size=args.ranks)
        size, total, pi = future.result()
    print(f"a gang of {size} ranks")
    print(f"sum(range({args.n})) = {total} (expected {args.n * (args.n - 1) // 2})")
    print(f"pi ~= {pi:.12f}, error {abs(pi - math.pi):.2e}")


if __name__ == "__main__":
    main()
