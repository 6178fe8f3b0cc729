"""The workloads of bench/compare.py for a Python pool, written once for mpi4py.futures, Dask and
mpigate.futures.

Each script (mpi4py_bench.py, dask_bench.py, mpigate_futures_bench.py) wraps its pool in a Pool
adapter, with that library's own fastest calls, and hands it to run(). Results go to stdout as lines
`workload,metric,value,unit`, the same lines bench/mpigate_bench prints. A line `gate,NAME` says
the program waits for one line on stdin before it goes on (bench/compare.py measures or
synchronises meanwhile).

The task is a no-op that returns its payload (echo, below); the workers import it from this module,
so its directory must be on their path. Every workload is the same Python function on each pool;
`python` is the set of them that compares the pools as Python function runners (mpigate.futures
runs only that one), the others are the counterparts of bench/mpigate_bench's C++ workloads.
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


def nap(seconds):
    """A task that keeps its worker busy for a while: see warm_up()."""
    time.sleep(seconds)


class Pool:
    """What the workloads need of a pool of 2 workers running echo."""

    def call(self, fn, *args):
        """Submits fn(*args); returns a future."""
        raise NotImplementedError

    def submit(self, payload):
        """Submits echo(payload); returns a future."""
        return self.call(echo, payload)

    def results(self, futures):
        """Waits for every future; returns their results in order."""
        raise NotImplementedError

    def map(self, payloads, chunksize):
        """echo over payloads in chunks of chunksize; returns the results in order."""
        raise NotImplementedError


class ExecutorPool(Pool):
    """A concurrent.futures-style executor with a chunked map (mpi4py.futures, mpigate.futures)."""

    def __init__(self, executor):
        self.executor = executor

    def call(self, fn, *args):
        return self.executor.submit(fn, *args)

    def results(self, futures):
        return [future.result() for future in futures]

    def map(self, payloads, chunksize):
        return list(self.executor.map(echo, payloads, chunksize=chunksize))


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


def submit_loop_rate(pool, tasks):
    """`tasks` empty echoes as one future each, then a wait for all: tasks/s."""
    start = time.perf_counter()
    pool.results([pool.submit(b"") for _ in range(tasks)])
    return round(tasks / (time.perf_counter() - start))


def map_rate(pool, tasks, chunksize):
    """A map of echo over `tasks` empty payloads in chunks of `chunksize`: items/s."""
    start = time.perf_counter()
    results = pool.map([b""] * tasks, chunksize)
    elapsed = time.perf_counter() - start
    if len(results) != tasks:
        raise RuntimeError(f"map returned {len(results)} results for {tasks} inputs")
    return round(tasks / elapsed)


def emit_latency(workload, pool, samples):
    """`samples` sequential round trips, after a tenth as many to warm up: p50 and p99."""
    round_trips_us(pool, max(20, samples // 10))
    times = round_trips_us(pool, samples)
    emit(workload, "p50", round(percentile(times, 0.5), 1), "us")
    emit(workload, "p99", round(percentile(times, 0.99), 1), "us")


def throughput(pool, args):
    """(a) args.tasks empty echoes as one future each, then as a map in chunks."""
    emit("throughput", "futures", submit_loop_rate(pool, args.tasks), "tasks/s")
    emit("throughput", f"map{args.chunksize}", map_rate(pool, args.tasks, args.chunksize),
         "tasks/s")


def latency(pool, args):
    """(b) args.samples sequential round trips."""
    emit_latency("latency", pool, args.samples)


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
    """(e) The hot p50, then the round trip of the first task after each of args.idle_spells idle
    spells, and their median (bench/mpigate_bench.cc's Idle() says why). The first spell is gate
    `idle`, during which compare.py measures the service's CPU; the others are gate
    `idle_again`."""
    hot = round_trips_us(pool, 200)
    emit("idle", "hot_p50", round(percentile(hot, 0.5), 1), "us")
    first = []
    for spell in range(max(args.idle_spells, 1)):
        wait_at_gate("idle" if spell == 0 else "idle_again")
        first.append(round_trips_us(pool, 1)[0])
    print(f"idle: the first task after each idle spell: {' '.join(f'{us:.1f}' for us in first)} us",
          file=sys.stderr, flush=True)
    emit("idle", "first_task", round(percentile(first, 0.5), 1), "us")


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


def warm_up(pool, tasks):
    """Gets every worker of the pool going before anything is timed: a pool may start a worker's
    interpreter on its first task (mpigate), and its scheduler may keep a burst of short tasks on
    one worker (mpigate's prefetch). A nap on each worker at once (neither will queue a 0.2 s task
    behind another's while a worker is free), then `tasks` echoes."""
    pool.results([pool.call(nap, 0.2) for _ in range(2)])
    pool.results([pool.submit(b"") for _ in range(tasks)])


def numpy_echo_rate(pool, size, echoes):
    """The median echo of a numpy array of `size` bytes, of `echoes` after one to warm up, as GB/s
    both ways. Each result is checked against the array, after its echo is timed."""
    import numpy  # pylint: disable=import-outside-toplevel  (only this workload needs it)

    array = numpy.arange(size // 8, dtype=numpy.float64)  # distinct values: a wrong echo shows
    times = []
    for rep in range(echoes + 1):
        start = time.perf_counter()
        result = pool.submit(array).result()
        elapsed = time.perf_counter() - start
        if not (isinstance(result, numpy.ndarray) and numpy.array_equal(result, array)):
            raise RuntimeError(f"the echo of a {size}-byte array came back as {type(result)}")
        if rep:
            times.append(elapsed)
    return round(2 * size / statistics.median(times) / 1e9, 4)


def python_functions(pool, args):
    """(h) The pool as a runner of Python functions, all on one pool: the submit loop, the map and
    the round trips of (a) and (b), then args.numpy_echoes echoes of a numpy array of
    args.numpy_bytes. run() has timed the first task, on the fresh pool, before this."""
    warm_up(pool, max(100, args.tasks // 100))
    emit("python", "submit", submit_loop_rate(pool, args.tasks), "tasks/s")
    emit("python", f"map{args.chunksize}", map_rate(pool, args.tasks, args.chunksize), "items/s")
    emit_latency("python", pool, args.samples)
    try:
        emit("python", "numpy", numpy_echo_rate(pool, args.numpy_bytes, args.numpy_echoes),
             "GB/s")
    except Exception as error:  # pylint: disable=broad-except
        emit("python", "numpy", "error", one_line(error))


def python_round_trips(pool, args):
    """Only the round trips of (h), on a pool that has run nothing before: compare.py takes the
    median of (h)'s and two of these on fresh pools, as a pool's p50 settles in one of two modes
    for its whole life (by where its processes happen to run)."""
    warm_up(pool, 100)
    emit_latency("python_round_trips", pool, args.samples)


WORKLOADS = {
    "python": python_functions,
    "python_round_trips": python_round_trips,
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
    parser.add_argument("--idle_spells", type=int, default=1,
                        help="idle spells of the idle workload, each followed by one round trip")
    parser.add_argument("--payloads", type=payload_list,
                        default=payload_list("1024:200,1048576:50,67108864:3,268435456:3"),
                        help="SIZE:REPS,... echoes to time")
    parser.add_argument("--threads", type=int, default=4, help="submitting threads per client")
    parser.add_argument("--numpy_bytes", type=int, default=64 << 20,
                        help="size of the numpy array that --workload=python echoes")
    parser.add_argument("--numpy_echoes", type=int, default=3,
                        help="timed echoes of that array, after one to warm up")
    parser.add_argument("--scheduler", help="the pool to join, for --workload=clients")
    parser.add_argument("--endpoint", help="the mpigate service, for mpigate_futures_bench.py")
    parser.add_argument("--launched_at", type=float, default=0,
                        help="for --workload=start: when this process was launched, in Unix "
                             "seconds; the start is timed from then")
    return parser.parse_args()


def run(make_pool, args):
    """Starts a pool with make_pool() (a context manager yielding a Pool) and runs args.workload.

    (f) start: the time from the process's launch (--launched_at; else from make_pool()) to the
    first task's result. (h) python: the time from make_pool() to the first task's result, which
    includes whatever the pool starts for its first Python task (workers' interpreters).
    """
    start = time.perf_counter()
    with make_pool() as pool:
        # Pools may start their workers lazily: no workload times their start but these two.
        pool.submit(b"").result()
        if args.workload == "start":
            took = (time.time() - args.launched_at if args.launched_at
                    else time.perf_counter() - start)
            emit("start", "first_task", round(took, 3), "s")
            return
        if args.workload == "python":
            emit("python", "first_task", round(time.perf_counter() - start, 3), "s")
        WORKLOADS[args.workload](pool, args)
