"""The workloads of bench/compare.py for a Python peer, written once for mpi4py.futures and Dask.

Each peer script (mpi4py_bench.py, dask_bench.py) wraps its pool in a Pool adapter, with that
library's own fastest calls, and hands it to run(). Results go to stdout as lines
`workload,metric,value,unit`, the same lines bench/mpigate_bench prints. A line `gate,NAME` says
the program waits for one line on stdin before it goes on (bench/compare.py measures or
synchronises meanwhile).

The task is a no-op that returns its payload (echo, below); the workers import it from this module,
so its directory must be on their path.
"""

import argparse
import os
import statistics
import sys
import threading
import time


def echo(payload):
    """The task: returns its payload, as mpigate's built-in echo."""
    return payload


def echo_chunk(payloads):
    """A chunk of a map, for a pool without chunked maps: echo on each item."""
    return [echo(payload) for payload in payloads]


class Pool:
    """What the workloads need of a pool of 2 workers running echo."""

    def submit(self, payload):
        """Submits echo(payload); returns a future."""
        raise NotImplementedError

    def results(self, futures):
        """Waits for every future; returns their results in order."""
        raise NotImplementedError

    def map(self, payloads, chunksize):
        """echo over payloads in chunks of chunksize; returns the results in order."""
        raise NotImplementedError


def keep_stdio_from_children():
    """Moves stdin and stdout, compare.py's pipes, to descriptors that child processes do not
    inherit, and gives children /dev/null and stderr instead. To be called before the pool's
    library is imported: mpi4py initialises MPI on import, and Open MPI then starts its daemon,
    which reads stdin to forward it (taking gate lines away) and may outlive this process holding
    stdout open (so compare.py would see no end of it)."""
    global _from_compare, _to_compare  # pylint: disable=global-statement
    # Python's os.dup() makes descriptors that are not inherited.
    _from_compare, _to_compare = os.fdopen(os.dup(0)), os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)


_from_compare, _to_compare = sys.stdin, sys.stdout


def emit(workload, metric, value, unit):
    print(f"{workload},{metric},{value},{unit}", file=_to_compare, flush=True)


def wait_at_gate(name):
    """Tells bench/compare.py that we reached `name`, and waits until it lets us go on."""
    print(f"gate,{name}", file=_to_compare, flush=True)
    if not _from_compare.readline():
        raise RuntimeError(f"stdin closed at gate {name}")


def round_trips_us(pool, count):
    """`count` sequential submit-and-wait of an empty echo, each in microseconds."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        pool.submit(b"").result()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


def throughput(pool, args):
    """(a) args.tasks empty echoes as one future each, then as a map in chunks."""
    start = time.perf_counter()
    futures = [pool.submit(b"") for _ in range(args.tasks)]
    pool.results(futures)
    emit("throughput", "futures", round(args.tasks / (time.perf_counter() - start)), "tasks/s")

    start = time.perf_counter()
    results = pool.map([b""] * args.tasks, args.chunksize)
    if len(results) != args.tasks:
        raise RuntimeError(f"map returned {len(results)} results for {args.tasks} inputs")
    emit("throughput", f"map{args.chunksize}", round(args.tasks / (time.perf_counter() - start)),
         "tasks/s")


def latency(pool, args):
    """(b) args.samples sequential round trips, after a tenth as many to warm up."""
    round_trips_us(pool, max(20, args.samples // 10))
    times = round_trips_us(pool, args.samples)
    emit("latency", "p50", round(percentile(times, 0.5), 1), "us")
    emit("latency", "p99", round(percentile(times, 0.99), 1), "us")


def payload(pool, args):
    """(c) For each SIZE:REPS of args.payloads, the median echo of SIZE bytes, as GB/s both ways.

    A size that fails is reported as an error and the next one is tried.
    """
    for size, reps in args.payloads:
        try:
            data = bytes(size)
            times = []
            for rep in range(reps + 1):  # The first one warms up.
                start = time.perf_counter()
                result = pool.submit(data).result()
                elapsed = time.perf_counter() - start
                if len(result) != size:
                    raise RuntimeError(f"echo of {size} bytes came back with {len(result)}")
                if rep:
                    times.append(elapsed)
            emit("payload", size, round(2 * size / statistics.median(times) / 1e9, 4), "GB/s")
        except Exception as error:  # pylint: disable=broad-except
            emit("payload", size, "error", one_line(error))


def idle(pool, args):
    """(e) The hot p50, then (after the gate, during which compare.py measures the service's CPU)
    the round trip of the first task after the idle spell."""
    hot = round_trips_us(pool, 200)
    emit("idle", "hot_p50", round(percentile(hot, 0.5), 1), "us")
    wait_at_gate("idle")
    emit("idle", "first_task", round(round_trips_us(pool, 1)[0], 1), "us")


def clients(pool, args):
    """(d) One of many client processes of one pool: after the gate (which compare.py opens for
    all clients at once), args.threads threads submit args.tasks empty echoes between them, one
    future each, and wait for them. Reports the tasks and the wall-clock time they were done."""
    per_thread = args.tasks // args.threads
    failures = []

    def submit_and_wait():
        try:
            pool.results([pool.submit(b"") for _ in range(per_thread)])
        except Exception as error:  # pylint: disable=broad-except
            failures.append(error)

    threads = [threading.Thread(target=submit_and_wait) for _ in range(args.threads)]
    wait_at_gate("clients")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    emit("clients", "tasks", per_thread * args.threads, "tasks")
    emit("clients", "done_at", round(time.time(), 6), "unix s")


WORKLOADS = {
    "throughput": throughput,
    "latency": latency,
    "payload": payload,
    "idle": idle,
    "clients": clients,
}


def one_line(error):
    return f"{type(error).__name__}: {error}".replace("\n", " ").replace(",", ";")


def payload_list(text):
    """"1024:200,1048576:50" -> [(1024, 200), (1048576, 50)]"""
    return [tuple(int(part) for part in item.split(":")) for item in text.split(",")]


def parse_args(extra_workloads):
    """The command line shared by the peers; `extra_workloads` are the peer's own."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True,
                        choices=sorted(["start", *WORKLOADS, *extra_workloads]))
    parser.add_argument("--tasks", type=int, default=100_000,
                        help="tasks of a throughput or clients run")
    parser.add_argument("--chunksize", type=int, default=64, help="items per chunk of the map")
    parser.add_argument("--samples", type=int, default=2000, help="sequential round trips")
    parser.add_argument("--payloads", type=payload_list,
                        default=payload_list("1024:200,1048576:50,67108864:3,268435456:3"),
                        help="SIZE:REPS,... echoes to time")
    parser.add_argument("--threads", type=int, default=4, help="submitting threads per client")
    parser.add_argument("--scheduler", help="the pool to join, for --workload=clients")
    parser.add_argument("--launched_at", type=float, default=0,
                        help="for --workload=start: when this process was launched, in Unix "
                             "seconds; the start is timed from then")
    return parser.parse_args()


def run(make_pool, args):
    """Starts a pool with make_pool() (a context manager yielding a Pool) and runs args.workload.

    (f) start: the time from the process's launch (--launched_at; else from make_pool()) to the
    first task's result.
    """
    start = time.perf_counter()
    with make_pool() as pool:
        # Pools may start their workers lazily: no workload times their start but this one.
        pool.submit(b"").result()
        if args.workload == "start":
            took = (time.time() - args.launched_at if args.launched_at
                    else time.perf_counter() - start)
            emit("start", "first_task", round(took, 3), "s")
        else:
            WORKLOADS[args.workload](pool, args)
