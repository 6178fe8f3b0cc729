"""A QC Lab-style ensemble on an mpigate pool: seeded batches of trajectories, summed on the client.

Each task propagates a batch of classical trajectories of a damped, driven oscillator from random
initial conditions drawn with its own seed (numpy), and returns the sum over the batch of the
position at every time step. The client adds the batches up and divides by the number of
trajectories: the ensemble average <x(t)>. The same seeds give the same answer however the
batches are spread over the workers, which --check verifies against a serial run.

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 \
        examples/python/ensemble.py --batches 16 --trajectories 2000 --check

The pool: $MPIGATE_ENDPOINT, the endpoint file, or a private one of --workers workers.
"""

import argparse

import numpy

from mpigate.futures import MPIPoolExecutor

STEPS = 200
DT = 0.05


def run_batch(seed, trajectories):
    """The sum over `trajectories` trajectories of x(t) at each of STEPS steps (velocity Verlet
    for x'' = -x - 0.1 x' + 0.3 cos(t))."""
    rng = numpy.random.default_rng(seed)
    x = rng.normal(1.0, 0.2, trajectories)
    v = rng.normal(0.0, 0.2, trajectories)
    total = numpy.empty(STEPS)
    for step in range(STEPS):
        t = step * DT
        a = -x - 0.1 * v + 0.3 * numpy.cos(t)
        x = x + v * DT + 0.5 * a * DT * DT
        a_next = -x - 0.1 * v + 0.3 * numpy.cos(t + DT)
        v = v + 0.5 * (a + a_next) * DT
        total[step] = x.sum()
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--trajectories", type=int, default=2000, help="per batch")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--check", action="store_true", help="compare with a serial run")
    args = parser.parse_args()

    seeds = range(1000, 1000 + args.batches)
    with MPIPoolExecutor(args.workers) as executor:
        total = sum(executor.map(run_batch, seeds, [args.trajectories] * args.batches,
                                 unordered=True))
        workers = executor.num_workers
    mean = total / (args.batches * args.trajectories)
    print(f"{args.batches} batches of {args.trajectories} trajectories on {workers} workers")
    for step in (0, STEPS // 4, STEPS // 2, STEPS - 1):
        print(f"<x(t={step * DT:5.2f})> = {mean[step]:+.6f}")
    if args.check:
        serial = sum(run_batch(seed, args.trajectories) for seed in seeds)
        print(f"matches the serial run: {numpy.allclose(total, serial, rtol=1e-12)}")


if __name__ == "__main__":
    main()
