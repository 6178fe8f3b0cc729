"""Side by side: mpigate, mpi4py.futures and Dask, each with 2 workers, on the workloads of the
performance issues. The driver behind bench/compare.sh, which installs the peers and builds first.

    bench/compare.sh [--quick] [--python-only] [--out DIR] [--check [BASELINE]]

Each workload is one run of a program: bazel-bin/bench/mpigate_bench against an mpigate-server
this script starts (once with --isolation=process, the default, and once with none), or
bench/peers/mpi4py_bench.py and dask_bench.py, which make a pool of their own each run. The
Python workloads (h), the same no-op Python function on every pool, are one run of
bench/peers/mpigate_futures_bench.py (mpigate.futures) against a fresh mpigate-server of each
isolation, whose round trips are the medians of it and two more fresh servers, and one of each
peer's script; --python-only runs only them. Just before each
mpigate pool's latency (b), the floors of a round trip run with no pool: bazel-bin/bench/stream_api
(gRPC alone, on the Session stream) and bazel-bin/bench/mpi_pingpong (MPI alone, two processes
under the build's mpiexec), and, before the default pool's, bazel-bin/bench/runner_hop (a worker's
hop to its task runner alone). Programs
print lines `workload,metric,value,unit`; this script adds what it measures from outside (idle
CPU, many clients' aggregate, a 32-worker pool's life), writes them all to DIR/raw.csv as
`system,workload,metric,value,unit`, and bench/report.py makes the table, DIR/results.csv and
DIR/results.png from that. With --check, it then compares the run with BASELINE (default
bench/results/baseline.csv; see bench/report.py), measures again what a figure worse than its
tolerance needs (DIR/again1, and DIR/again2 while undecided: two measurements of three decide),
and exits 1 naming each figure whose median is worse than the baseline by more than its
tolerance.

A program that prints `gate,NAME` waits for a line on stdin: at gate `idle` this script measures
the CPU time the service's processes use meanwhile, at gate `idle_again` ((e)'s further idle
spells) it only waits as long; at gate `clients` it waits until every client process is there and
then lets them all go at once.

Every program and pool has a time limit: one that passes it is killed with its whole process tree
and its workload reported as an error, never waited for. This script adopts orphaned descendants
(a subreaper) and, at the end, kills and reports any process still left.
"""

import argparse
import contextlib
import csv
import dataclasses
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import process_tree
import report

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SERVER = os.path.join(ROOT, "bazel-bin/server/mpigate-server")
MPIGATE_BENCH = os.path.join(ROOT, "bazel-bin/bench/mpigate_bench")
# The floors of (b): a gRPC round trip on the Session stream with no pool behind it, an MPI
# ping-pong of two processes, and a worker's round trip to a task runner.
STREAM_API = os.path.join(ROOT, "bazel-bin/bench/stream_api")
MPI_PINGPONG = os.path.join(ROOT, "bazel-bin/bench/mpi_pingpong")
RUNNER_HOP = os.path.join(ROOT, "bazel-bin/bench/runner_hop")
RUNNER = os.path.join(ROOT, "bazel-bin/worker/mpigate-runner")
# The MPI library the built server links (bench/compare.sh --mpi) and its launcher.
MPI_FAMILY, MPIEXEC = subprocess.run([SERVER, "--mpi_launcher"], check=True, capture_output=True,
                                     text=True).stdout.split()
# Debian's interpreter, which has Debian's mpi4py and Dask (the python3 first on PATH may not).
PYTHON = "/usr/bin/python3"
# Where the mpigate package is: its sources, and its generated gRPC stubs (mpigate.v1).
MPIGATE_PYTHONPATH = ":".join(os.path.join(ROOT, part)
                              for part in ("client/python", "bazel-bin/client/python"))

# The committed baseline that --check compares a run with, and how many times at most it
# measures a figure that is worse than it (check()).
BASELINE = os.path.join(BENCH, "results", "baseline.csv")
MEASUREMENTS = 3

WORKERS = 2
CHUNKSIZE = 64
CLIENT_PROCESSES = 8
CLIENT_THREADS = 4
SCALE_WORKERS = 32
# Fresh pools whose round trips (h)'s p50 and p99 are the medians of (run_mpigate_python).
PYTHON_ROUND_TRIP_POOLS = 3
LEFTOVER_GRACE_SECONDS = 10
# Before a run and each re-measurement, the machine gets this long at most to settle: until its
# load average (1 min) is under SETTLED_LOAD. A full run ends with a 32-worker pool and Dask, and
# the re-measurements right after it found the bare gRPC round trip at 90-100 us against the
# run's own 55-58 us.
SETTLE_SECONDS = 180
SETTLED_LOAD = 1.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much of each workload to run."""

    tasks: int  # (a) tasks of the submit loop, and items of the map
    samples: int  # (b) sequential round trips
    payloads: tuple  # (c) (size in bytes, timed echoes) pairs
    client_tasks: int  # (d) tasks of all client processes together
    idle_seconds: float  # (e) each idle spell
    idle_spells: int  # (e) idle spells, each followed by one round trip; the median counts
    burst_per_worker: int  # (g) tasks per worker of the burst
    numpy_echoes: int  # (h) timed echoes of the numpy array (tasks and samples as (a) and (b))


NUMPY_BYTES = 64 << 20  # (h) the numpy array echoed

FULL = Sizes(tasks=100_000, samples=2000,
             payloads=((1 << 10, 200), (1 << 20, 50), (64 << 20, 3), (256 << 20, 3)),
             client_tasks=100_000, idle_seconds=10, idle_spells=3, burst_per_worker=50,
             numpy_echoes=5)
QUICK = Sizes(tasks=10_000, samples=300,
              payloads=((1 << 10, 20), (1 << 20, 5), (64 << 20, 1), (256 << 20, 1)),
              client_tasks=10_000, idle_seconds=3, idle_spells=1, burst_per_worker=10,
              numpy_echoes=2)


def for_dask(sizes):
    """Dask takes about 2 ms per task and 11 ms per round trip here, 10 to 30 times what the others
    take: fewer of them keep its part of the run to a few minutes. Rates are per task anyway."""
    return dataclasses.replace(sizes, tasks=sizes.tasks // 5, samples=sizes.samples // 4,
                               client_tasks=sizes.client_tasks // 6)


# Time limits, seconds, of one program run per workload (a quick run takes a third); they only
# bound a run that has gone wrong.
TIME_LIMITS = {"start": 60, "throughput": 300, "latency": 150, "payload": 240, "idle": 120,
               "clients": 300, "burst": 120, "serve": 60, "stop": 90, "python": 400,
               "python_round_trips": 120, "floor_grpc": 60, "floor_mpi": 60,
               "floor_runner": 60}


class Results:
    """The rows of raw.csv: system, workload, metric, value, unit. A failure is a row whose value is
    `error` (or `n/a`) and whose unit is why; metric `*` stands for every metric of the workload."""

    def __init__(self):
        self.rows = []

    def add(self, system, workload, metric, value, unit):
        self.rows.append((system, workload, metric, str(value), unit))

    def add_line(self, system, line):
        """A program's `workload,metric,value,unit` line."""
        fields = line.split(",", 3)
        if len(fields) == 4:
            self.add(system, *fields)
        else:
            self.error(system, "output", f"unexpected line: {line[:200]}")

    def error(self, system, workload, why):
        log(f"{system} {workload}: error: {why}")
        self.add(system, workload, "*", "error", why.replace("\n", " "))

    def write_csv(self, path):
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(("system", "workload", "metric", "value", "unit"))
            writer.writerows(self.rows)


def log(message):
    print(f"compare: {message}", file=sys.stderr, flush=True)


class Program:
    """A child process whose stdout lines are read with deadlines; its stderr goes to a log file.
    As a context manager, kills the process and its descendants on exit if it still runs."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        with open(log_path, "w", encoding="utf-8") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=stderr, text=True)
        self.pid = self.process.pid
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        if self.process.poll() is None:
            self.kill_tree()

    def _read(self):
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self, deadline):
        """The next line of stdout, None at its end; TimeoutError if none came by `deadline`
        (time.monotonic()). Its end is also a second without a line after the program exited: a
        process it left behind may hold its stdout open."""
        exited_at = None
        while True:
            try:
                return self._lines.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError from None
                if self.process.poll() is not None:
                    exited_at = exited_at or now
                    if now - exited_at > 1:
                        return None

    def expect(self, expected, deadline):
        """Reads the next line, which must be `expected`: RuntimeError saying why if it is not."""
        line = self.next_line(deadline)
        if line is None:
            self.wait(deadline)
            raise RuntimeError(self.failure())
        if line != expected:
            raise RuntimeError(f"expected '{expected}', got '{line[:200]}'")

    def go(self):
        """Lets the program past the gate it waits at."""
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def wait(self, deadline):
        """The exit status; TimeoutError if it has not exited by `deadline`."""
        try:
            return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TimeoutError from None

    def kill_tree(self):
        process_tree.kill(process_tree.descendants(self.pid))
        self.process.wait()

    def failure(self):
        """Why it failed, from the last line of its stderr."""
        with open(self.log_path, encoding="utf-8", errors="replace") as stderr:
            lines = [line.strip() for line in stderr if line.strip()]
        status = f"exit status {self.process.returncode}"
        return f"{lines[-1][:300]} ({status})" if lines else status


def idle_cpu_percent(root, seconds):
    """The CPU time the process tree at `root` uses over `seconds`, as % of one core."""
    before = process_tree.cpu_seconds(process_tree.descendants(root))
    time.sleep(seconds)
    after = process_tree.cpu_seconds(process_tree.descendants(root))
    used = sum(total - before.get(pid, 0.0) for pid, total in after.items())
    return round(100 * used / seconds, 2)


class Run:
    """One run of the comparison: where its logs go, how big it is, what it found."""

    def __init__(self, out_dir, sizes, time_scale):
        self.logs = os.path.join(out_dir, "logs")
        self.raw = os.path.join(out_dir, "raw.csv")
        os.makedirs(self.logs, exist_ok=True)
        self.sizes = sizes
        self.time_scale = time_scale
        self.results = Results()

    def time_limit(self, what):
        return TIME_LIMITS[what] * self.time_scale

    def start(self, name, argv):
        return Program(argv, os.path.join(self.logs, f"{name}.log"))

    def program(self, system, workload, argv, service_root=None):
        """Runs one workload program to its end, answering its idle gate by measuring the CPU of
        the process tree at `service_root` (the program's own if None). True if it succeeded."""
        began = time.monotonic()
        deadline = began + self.time_limit(workload)
        with self.start(f"{system}.{workload}", argv) as program:
            try:
                while (line := program.next_line(deadline)) is not None:
                    if line == "gate,idle":
                        cpu = idle_cpu_percent(service_root or program.pid, self.sizes.idle_seconds)
                        self.results.add(system, "idle", "cpu", cpu, "% of one core")
                        program.go()
                    elif line == "gate,idle_again":
                        time.sleep(self.sizes.idle_seconds)  # (e)'s next idle spell
                        program.go()
                    else:
                        self.results.add_line(system, line)
                succeeded = program.wait(deadline) == 0
                if not succeeded:
                    self.results.error(system, workload, program.failure())
            except TimeoutError:
                succeeded = False
                self.results.error(system, workload, self.timed_out(workload))
        log(f"{system} {workload}: {time.monotonic() - began:.1f} s")
        return succeeded

    def timed_out(self, what):
        return f"not done within its time limit of {self.time_limit(what):.0f} s; killed"

    def clients(self, system, argv):
        """(d) CLIENT_PROCESSES runs of `argv` (a clients workload), let go at once; records their
        aggregate tasks/s, from that moment to the last one's last result."""
        began = time.monotonic()
        deadline = began + self.time_limit("clients")
        with contextlib.ExitStack() as running:
            programs = [running.enter_context(self.start(f"{system}.clients.{i}", argv))
                        for i in range(CLIENT_PROCESSES)]
            self._let_clients_go(system, programs, deadline)
        log(f"{system} clients: {time.monotonic() - began:.1f} s")

    def _let_clients_go(self, system, programs, deadline):
        try:
            for program in programs:
                program.expect("gate,clients", deadline)
            released_at = time.time()
            for program in programs:
                program.go()
            tasks, done_at = 0, released_at
            for program in programs:
                # Each says `clients,tasks,N,tasks` and `clients,done_at,UNIX_SECONDS,unix s`.
                while (line := program.next_line(deadline)) is not None:
                    _, metric, value, _ = line.split(",", 3)
                    if metric == "tasks":
                        tasks += int(value)
                    elif metric == "done_at":
                        done_at = max(done_at, float(value))
                if program.wait(deadline) != 0:
                    raise RuntimeError(program.failure())
            self.results.add(system, "clients", "aggregate", round(tasks / (done_at - released_at)),
                             "tasks/s")
        except TimeoutError:
            self.results.error(system, "clients", self.timed_out("clients"))
        except (RuntimeError, ValueError) as error:
            self.results.error(system, "clients", str(error))


def workload_flags(workload, sizes):
    """The command-line flags every bench program takes."""
    payloads = ",".join(f"{size}:{reps}" for size, reps in sizes.payloads)
    return [f"--workload={workload}", f"--tasks={sizes.tasks}", f"--chunksize={CHUNKSIZE}",
            f"--samples={sizes.samples}", f"--idle_spells={sizes.idle_spells}",
            f"--payloads={payloads}", f"--threads={CLIENT_THREADS}"]


def python_flags(sizes, workload="python"):
    """The flags of a Python workloads run (h)."""
    return workload_flags(workload, sizes) + [f"--numpy_bytes={NUMPY_BYTES}",
                                              f"--numpy_echoes={sizes.numpy_echoes}"]


class MpigateServer:
    """An mpigate-server with a socket directory of its own, launched on construction. As a
    context manager, kills what is left of it on exit (nothing after a clean stop())."""

    def __init__(self, run, name, workers, isolation, flags=()):
        # A directory under /tmp: a Unix socket's path must stay short.
        self.socket_dir = tempfile.mkdtemp(prefix="mpigate-compare-", dir="/tmp")
        self.endpoint = f"unix:{self.socket_dir}/s.sock"
        self.launched_at = time.time()
        command = [SERVER, f"--workers={workers}", f"--isolation={isolation}",
                   f"--listen={self.endpoint}", f"--endpoint-file={self.socket_dir}/endpoint",
                   *flags]
        # Built against MPICH, which cannot spawn, the pool runs in world mode under its launcher.
        if MPI_FAMILY != "openmpi":
            command = [MPIEXEC, "-n", str(workers + 1), *command, "--world"]
        # The gateway's pid, from its first lines: under mpiexec, the process to signal.
        self.server_pid = None
        self.program = run.start(f"{name}.server", command)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.program.__exit__()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def wait_for(self, text, deadline):
        """Waits for a line of the server's stdout containing `text`; RuntimeError if it exits
        first, TimeoutError if it has not come by `deadline`."""
        while (line := self.program.next_line(deadline)) is not None:
            # Its listening and ready lines end with its pid.
            if line.startswith("mpigate-server: ") and ", pid " in line:
                self.server_pid = int(line.rsplit(", pid ", 1)[1])
            if text in line:
                return
        self.program.wait(deadline)
        raise RuntimeError(f"mpigate-server exited before '{text}': {self.program.failure()}")

    def stop(self, time_limit):
        """SIGTERM, then waits for the server and every process it had started (its MPI daemon,
        workers and runners, which may end a little after it) to exit. None if all exited, the
        server with status 0, within `time_limit`; else what went wrong."""
        tree = process_tree.descendants(self.program.pid)
        if self.server_pid is None:
            self.program.process.send_signal(signal.SIGTERM)
        else:
            os.kill(self.server_pid, signal.SIGTERM)
        deadline = time.monotonic() + time_limit
        try:
            status = self.program.wait(deadline)
        except TimeoutError:
            return f"mpigate-server did not exit within {time_limit:.0f} s of SIGTERM"
        # They are not our children (until orphaned): nothing to block on but their /proc entries.
        while (left := process_tree.alive(tree)) and time.monotonic() < deadline:
            time.sleep(0.01)
        process_tree.reap_adopted({self.program.pid})
        if left:
            return f"{len(left)} of the pool's processes still ran {time_limit:.0f} s after SIGTERM"
        if status != 0:
            return f"mpigate-server exited with status {status}"
        return None


def record_sizes(run, system, sizes):
    """How much of each workload `system` ran, for the notes under the table."""
    for field in ("tasks", "samples", "client_tasks", "idle_seconds", "idle_spells",
                  "numpy_echoes"):
        run.results.add(system, "sizes", field, getattr(sizes, field), "")


def mpigate_system(isolation):
    return "mpigate" if isolation == "process" else f"mpigate-{isolation}"


def start_server(run, server, system, workload):
    """Waits until `server` listens; False, with `workload` of `system` reported as an error, if it
    exits or times out first."""
    try:
        server.wait_for("listening on", time.monotonic() + run.time_limit("start"))
        return True
    except TimeoutError:
        run.results.error(system, workload, f"mpigate-server: {run.timed_out('start')}")
    except RuntimeError as error:
        run.results.error(system, workload, str(error))
    return False


def run_floors(run, system):
    """The floors of (b), each a sequential round trip of a small message, p50 and p99, measured
    just before `system`'s (b) (a busy machine's load drifts within a run): gRPC's, on the Session
    stream through the callback API as the gateway uses it, with no pool behind it
    (bench/stream_api, the median of 3 fresh servers, each after 1,000 round trips to warm up);
    and MPI's, a ping-pong between two processes of the library the build links under its
    mpiexec (after 1,000 to warm up), connected as the pool's gateway and workers are: under Open
    MPI one spawns the other (a pool's gateway spawns its workers, and Open MPI 4.1 joins two jobs
    over TCP, not shared memory), under MPICH both are of one world (its pools' world mode); and,
    for the default isolation's pool, the hop it adds to every task: a worker's round trip to a
    real mpigate-runner through its RunnerProcess, with no MPI or gRPC around it
    (bench/runner_hop, after 500 to warm up)."""
    samples = str(run.sizes.samples)
    run.program(system, "floor_grpc", [STREAM_API, "--api=callback", "--messages=0", "--csv",
                                       "--rounds=3", f"--pings={samples}"])
    processes = ["-n", "1", MPI_PINGPONG, "--spawn"] if MPI_FAMILY == "openmpi" else [
        "-n", "2", MPI_PINGPONG]
    run.program(system, "floor_mpi", [MPIEXEC, *processes, f"--pings={samples}",
                                      "--warmup=1000"])
    if system == mpigate_system("process"):
        run.program(system, "floor_runner", [RUNNER_HOP, "--csv", f"--runner={RUNNER}",
                                             f"--small={samples}"])


def run_mpigate(run, isolation):
    """(a)-(f) on one pool of WORKERS workers: (f) is its first task, the rest follow; the floors
    of (b) just before it."""
    system = mpigate_system(isolation)
    with MpigateServer(run, system, WORKERS, isolation) as server:
        if not start_server(run, server, system, "*"):
            return
        command = [MPIGATE_BENCH, f"--endpoint={server.endpoint}"]
        run.program(system, "start", command + workload_flags("start", run.sizes) +
                    [f"--launched_at={server.launched_at:.6f}"])
        for workload in ("throughput", "latency", "payload", "idle"):
            if workload == "latency":
                run_floors(run, system)
            run.program(system, workload, command + workload_flags(workload, run.sizes),
                        service_root=server.program.pid)
        client_sizes = dataclasses.replace(run.sizes,
                                           tasks=run.sizes.client_tasks // CLIENT_PROCESSES)
        run.clients(system, command + workload_flags("clients", client_sizes))
        if problem := server.stop(run.time_limit("stop")):
            run.results.error(system, "stop", problem)


def run_mpigate_python(run, isolation):
    """(h) mpigate.futures on a pool of WORKERS workers of its own, which has run nothing before
    (its first task starts a runner's interpreter), shared as a service is: the executor is one
    client of it. Then PYTHON_ROUND_TRIP_POOLS - 1 more fresh pools run only (h)'s round trips
    (workload python_round_trips), whose p50 and p99 report.py takes the medians of with the
    first pool's: one pool's p50 keeps to one of two levels (about 290 or 420 us on the 2-core
    machine) for its whole life, and a single pool made the guard (--check) fail runs with no
    regression in them."""
    system = mpigate_system(isolation)
    command = ["/usr/bin/env", f"PYTHONPATH={MPIGATE_PYTHONPATH}", PYTHON,
               os.path.join(BENCH, "peers", "mpigate_futures_bench.py")]
    for pool in range(PYTHON_ROUND_TRIP_POOLS):
        workload = "python" if pool == 0 else "python_round_trips"
        with MpigateServer(run, f"{system}.{workload}{pool}", WORKERS, isolation,
                           ["--python=on"]) as server:
            if not start_server(run, server, system, workload):
                continue
            run.program(system, workload, command + [f"--endpoint={server.endpoint}",
                                                     *python_flags(run.sizes, workload)])
            if problem := server.stop(run.time_limit("stop")):
                run.results.error(system, "stop", problem)


def run_scale(run):
    """(g) A pool of SCALE_WORKERS workers (oversubscribed): ready time, a burst spread over every
    worker, shutdown time, and whether everything ended within its time limit and left nothing."""
    system = "mpigate"
    with MpigateServer(run, f"{system}.scale", SCALE_WORKERS, "process") as server:
        no_hang = False
        try:
            server.wait_for("ready in", time.monotonic() + run.time_limit("start"))
            run.results.add(system, "scale", "ready", round(time.time() - server.launched_at, 3),
                            "s")
            burst = dataclasses.replace(run.sizes,
                                        tasks=SCALE_WORKERS * run.sizes.burst_per_worker)
            run.results.add(system, "scale", "burst_tasks", burst.tasks, "tasks")
            command = [MPIGATE_BENCH, f"--endpoint={server.endpoint}",
                       "--rank_variable=" + ("OMPI_COMM_WORLD_RANK" if MPI_FAMILY == "openmpi"
                                             else "PMI_RANK")]
            burst_done = run.program(system, "burst", command + workload_flags("burst", burst))
            stopping = time.monotonic()
            problem = server.stop(run.time_limit("stop"))
            run.results.add(system, "scale", "shutdown", round(time.monotonic() - stopping, 3), "s")
            if problem:
                run.results.error(system, "scale", problem)
            no_hang = burst_done and not problem
        except TimeoutError:
            run.results.error(system, "scale", f"mpigate-server: {run.timed_out('start')}")
        except RuntimeError as error:
            run.results.error(system, "scale", str(error))
        run.results.add(system, "scale", "no_hang", "yes" if no_hang else "no", "")


def run_peer(run, system, script, sizes, can_share_pool, parts):
    """(h) if `parts` has report.PYTHON, then (a)-(f) if it has report.CORE, for a Python peer; a
    pool of its own per workload. (d) needs a pool that several client processes can share:
    `serve` makes one, or the peer cannot."""
    command = [PYTHON, os.path.join(BENCH, "peers", script)]
    if report.PYTHON in parts:
        run.program(system, "python", command + python_flags(sizes))
    if report.CORE not in parts:
        return
    # (f) from the launch of the process, as for mpigate's server: a peer's start includes its
    # interpreter and its MPI_Init (mpi4py runs it on import, before any pool is made).
    run.program(system, "start", command + workload_flags("start", sizes) +
                [f"--launched_at={time.time():.6f}"])
    for workload in ("throughput", "latency", "payload", "idle"):
        run.program(system, workload, command + workload_flags(workload, sizes))
    if not can_share_pool:
        run.results.add(system, "clients", "*", "n/a", "one client process per pool")
        return
    with run.start(f"{system}.serve", command + workload_flags("serve", sizes)) as server:
        try:
            deadline = time.monotonic() + run.time_limit("serve")
            line = server.next_line(deadline)
            if line is None or not line.startswith("serve,address,"):
                server.wait(deadline)
                raise RuntimeError(server.failure())
            address = line.split(",")[2]
            server.expect("gate,serving", deadline)
            client_sizes = dataclasses.replace(sizes, tasks=sizes.client_tasks // CLIENT_PROCESSES)
            run.clients(system, command + workload_flags("clients", client_sizes) +
                        [f"--scheduler={address}"])
            server.go()
            server.wait(time.monotonic() + run.time_limit("stop"))
        except TimeoutError:
            run.results.error(system, "clients", f"{script} serve: {run.timed_out('serve')}")
        except RuntimeError as error:
            run.results.error(system, "clients", f"{script} serve: {error}")


def measure(run, parts):
    """Runs the `parts`, (system, report.CORE or report.PYTHON) pairs, in the run's order:
    mpigate's pools, then --isolation=none's, then each peer's."""
    for isolation in ("process", "none"):
        system = mpigate_system(isolation)
        if (system, report.CORE) in parts:
            run_mpigate(run, isolation)
        if (system, report.PYTHON) in parts:
            run_mpigate_python(run, isolation)
    for system, script, sizes, can_share_pool in (
            ("mpi4py", "mpi4py_bench.py", run.sizes, False),
            ("dask", "dask_bench.py", for_dask(run.sizes), True)):
        if peer_parts := {part for of, part in parts if of == system}:
            run_peer(run, system, script, sizes, can_share_pool, peer_parts)


def settle(run):
    """Waits until the machine's load average is under SETTLED_LOAD, SETTLE_SECONDS at most, and
    records the load average and how long it waited."""
    began = time.monotonic()
    while os.getloadavg()[0] >= SETTLED_LOAD and time.monotonic() - began < SETTLE_SECONDS:
        time.sleep(1)
    waited = round(time.monotonic() - began)
    if waited:
        log(f"waited {waited} s for the load average to fall under {SETTLED_LOAD:g}: "
            f"{os.getloadavg()[0]:.2f}")
    run.results.add("run", "settle", "waited", waited, "s")
    run.results.add("run", "load", "start", os.getloadavg()[0], "processes")


def measure_again(run, parts):
    """Runs the `parts` again in a run of their own (`run`), into its raw.csv; the report.Raw."""
    settle(run)
    try:
        measure(run, parts)
    finally:
        leftover_check(run)
        run.results.write_csv(run.raw)
    return report.Raw(run.raw)


def check(baseline, raw, out_dir, sizes):
    """--check: the run `raw` against `baseline`. What a figure worse than its tolerance needs (its
    pool's workloads, and mpi4py.futures' where it is a ratio to them) is measured again, in
    OUT_DIR/again1 and, while still undecided, again2; a figure fails when the median of its
    measurements does, two of three. One run alone, on this 2-core machine, named 1 to 6
    figures per run, a different set each time, in five runs of one commit
    (bench/results/runs-96a6c65): a regression is worse every time. True if it passed."""
    raws = [raw]
    rows = report.read_baseline(baseline)
    while len(raws) < MEASUREMENTS and (unsettled := report.check(rows, raws).unsettled):
        parts = report.parts_to_measure_again(unsettled)
        log(f"{len(unsettled)} figure(s) worse than the baseline: measuring "
            f"{', '.join(sorted(f'{system} {part}' for system, part in parts))} again")
        raws.append(measure_again(Run(os.path.join(out_dir, f"again{len(raws)}"), sizes, 1),
                                  parts))
    return report.print_check(baseline, raws)


def leftover_check(run):
    """Kills and reports every process this run left behind (adopted ones included), after a
    grace period for ones still on their way out (an MPI daemon ends a moment after its job)."""
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while (left := process_tree.descendants(os.getpid())[1:]) and time.monotonic() < deadline:
        process_tree.reap_adopted(set())
        time.sleep(0.1)
    if left:
        for pid in left:
            log(f"left behind: {pid} {process_tree.command_line(pid)[:200]}")
        process_tree.kill(left)
        time.sleep(0.5)
        process_tree.reap_adopted(set())
    run.results.add("run", "leftover", "processes", len(left), "processes")


def stop_on_sigterm(*_):
    log("SIGTERM: stopping everything this run started")
    sys.exit(143)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
    parser.add_argument("--python-only", action="store_true",
                        help="only the Python workloads (h): a few minutes, a minute if --quick")
    parser.add_argument("--out", help="where to write results (default: a new /tmp directory)")
    parser.add_argument("--check", nargs="?", const=BASELINE, metavar="BASELINE",
                        help="exit 1 if a figure is worse than BASELINE's (default "
                        "bench/results/baseline.csv) by more than its tolerance")
    args = parser.parse_args()
    if args.check and (args.quick or args.python_only):
        parser.error("--check compares a full run (the baseline's sizes and workloads): "
                     "not with --quick or --python-only")
    out_dir = args.out or tempfile.mkdtemp(prefix="mpigate-compare-results-", dir="/tmp")
    sizes = QUICK if args.quick else FULL
    run = Run(out_dir, sizes, time_scale=1 / 3 if args.quick else 1)

    process_tree.become_subreaper()
    # mpi4py's singleton spawns its workers through Open MPI, which refuses root and more
    # processes than cores unless told (mpigate-server tells it itself).
    if os.geteuid() == 0:
        os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    # SIGTERM ends the run as Ctrl-C does: through the exits that stop what each step started.
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    # The machine's load beside the run's own: a busy machine shows in every figure.
    settle(run)
    run.results.add("run", "load", "cores", os.cpu_count(), "cores")
    began = time.monotonic()
    try:
        for system, system_sizes in (("mpigate", sizes), ("mpigate-none", sizes),
                                     ("mpi4py", sizes), ("dask", for_dask(sizes))):
            record_sizes(run, system, system_sizes)
        measure(run, {(system, part) for system in report.SYSTEMS
                      for part in ((report.PYTHON,) if args.python_only
                                   else (report.CORE, report.PYTHON))})
        if not args.python_only:
            run_scale(run)
    finally:
        leftover_check(run)
        run.results.add("run", "duration", "minutes", round((time.monotonic() - began) / 60, 1),
                        "min")
        run.results.add("run", "load", "end", os.getloadavg()[0], "processes")
        run.results.write_csv(run.raw)
    report.write(run.raw, out_dir)
    log(f"raw lines, table, plot and logs are in {out_dir}")
    if args.check and not check(args.check, report.Raw(run.raw), out_dir, sizes):
        sys.exit(1)


if __name__ == "__main__":
    main()
