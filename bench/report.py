"""The table, CSV and plot of bench/compare.py, from its raw.csv (system, workload, metric, value,
unit). Runs on its own too, to redo them from a raw.csv:

    /usr/bin/python3 bench/report.py RAW_CSV OUT_DIR [--check BASELINE [--again RAW_CSV...]]
    /usr/bin/python3 bench/report.py --make-baseline BASELINE RAW_CSV... [--tolerances-from OLD]

Prints the table (Markdown) with each system's figure, the ratios mpigate / peer, and each target
of the performance issues with PASS or FAIL for mpigate's default configuration (and, where it
differs, for --isolation=none); writes OUT_DIR/results.csv (the table's numbers) and
OUT_DIR/results.png (gnuplot). Rows and plots of workloads the run did not do (a --python-only
run's C++ workloads) are left out.

The guard (see GUARDS): --check compares the run with a committed baseline of ratios to figures
measured in the same run (mostly mpi4py.futures'; (b)'s p50 also to the bare gRPC round trip),
and exits 1 naming each workload whose ratio is worse than the baseline's by more than its
tolerance (with --again, the run's re-measurements: the median of each figure's measurements);
--make-baseline writes such a baseline from several runs, each tolerance from their
spread.
"""

import argparse
import collections
import csv
import dataclasses
import math
import os
import statistics
import subprocess
import sys
import typing

SYSTEMS = ("mpigate", "mpigate-none", "mpi4py", "dask")
HEADERS = ("mpigate", "mpigate --isolation=none", "mpi4py.futures", "Dask")
DEFAULT, PEERS = "mpigate", ("mpi4py", "dask")
PAYLOAD_SIZES = (1 << 10, 1 << 20, 64 << 20, 256 << 20)
NUMPY_BYTES = 64 << 20  # The array of (h), as bench/compare.py sends it.


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal of the issue. margin(value, mpi4py's value) is >= 1 when it is met: how far past
    the goal the value is (achieved / required for an "at least", the inverse for an "at most")."""

    text: str
    margin: typing.Callable[[typing.Any, typing.Any], float]

    def __and__(self, other):
        return Target(f"{self.text}, {other.text}",
                      lambda mine, ref: min(self.margin(mine, ref), other.margin(mine, ref)))


def at_least(limit, unit):
    return Target(f"≥{limit:g} {unit}", lambda mine, ref: mine / limit)


def at_most(limit, unit):
    return Target(f"≤{limit:g}{unit}", lambda mine, ref: limit / mine if mine else float("inf"))


def at_least_times_mpi4py(factor):
    return Target(f"≥{factor:g}x mpi4py", lambda mine, ref: mine / ref / factor)


def at_most_times_mpi4py(factor):
    return Target(f"≤{factor:g}x mpi4py", lambda mine, ref: factor * ref / mine)


YES = Target("no hang", lambda mine, ref: 1.0 if mine == "yes" else 0.0)


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    workload: str
    metric: str
    target: typing.Optional[Target] = None
    # Whether mpigate / peer means something here (not for ratios of a system to itself).
    compare: bool = True
    # A count, shown without decimals.
    count: bool = False


def size_label(size):
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


ROWS = (
    Row("(a) submit loop, tasks/s", "throughput", "futures", at_least_times_mpi4py(20)),
    Row("(a) map, chunksize 64, tasks/s", "throughput", "map64", at_least_times_mpi4py(3)),
    # Issue 25 judges (b) against the floor (the vs_grpc row below), not against mpi4py.futures,
    # whose p50 is mostly its workers' polling backoff.
    Row("(b) latency p50, µs", "latency", "p50"),
    Row("(b) latency p99, µs", "latency", "p99"),
    # The floors, measured in the same run beside each pool's (b), in its column.
    Row("(b) floor: bare gRPC round trip p50, µs", "floor_grpc", "p50", compare=False),
    Row("(b) floor: bare MPI ping-pong p50, µs", "floor_mpi", "p50", compare=False),
    Row("(b) floor: task runner hop p50, µs", "floor_runner", "p50", compare=False),
    Row("(b) latency p50 / bare gRPC p50", "latency", "vs_grpc", at_most(2, "x"), compare=False),
    # What the hops alone cost, before any work of the gateway, the worker or the client: the
    # least the row above could be with the pool's hops as they are.
    Row("(b) the floors' sum / bare gRPC p50", "latency", "floors_vs_grpc", compare=False),
    *(Row(f"(c) echo {size_label(size)}, GB/s both ways", "payload", str(size),
          (at_least(1, "GB/s") & at_least_times_mpi4py(1)) if size >= 64 << 20
          else at_least_times_mpi4py(1)) for size in PAYLOAD_SIZES),
    Row("(d) 8 processes x 4 threads, tasks/s", "clients", "aggregate"),
    Row("(d) that / one client's submit loop", "clients", "vs_single", at_least(0.8, "(80%)"),
        compare=False),
    Row("(e) idle CPU, % of one core", "idle", "cpu", at_most(1, "%")),
    Row("(e) hot p50 before idle, µs", "idle", "hot_p50"),
    # Issue 25's target: the first task after 10 s idle, at most half of mpi4py.futures' (whose
    # workers wake from a 1 ms backoff sleep, as about ten of mpigate's processes must).
    Row("(e) first task after idle, µs", "idle", "first_task", at_most_times_mpi4py(0.5)),
    Row("(e) first after idle / hot p50", "idle", "after_idle_vs_hot", compare=False),
    Row("(f) start to first result, s", "start", "first_task", at_most(0.5, " s")),
    Row("(g) 32 workers: ready, s", "scale", "ready", at_most(10, " s")),
    Row("(g) 32 workers: burst, s", "scale", "burst"),
    Row("(g) 32 workers: workers that ran tasks", "scale", "workers_used", count=True),
    Row("(g) 32 workers: shutdown, s", "scale", "shutdown"),
    Row("(g) 32 workers: no hang", "scale", "no_hang", YES),
    # mpigate's columns: mpigate.futures. The targets of the Python functions issue (23).
    Row("(h) Python: submit loop, tasks/s", "python", "submit", at_least_times_mpi4py(5)),
    Row("(h) Python: map, chunksize 64, items/s", "python", "map64", at_least_times_mpi4py(2)),
    Row("(h) Python: round trip p50, µs", "python", "p50", at_most_times_mpi4py(1)),
    Row("(h) Python: round trip p99, µs", "python", "p99"),
    Row(f"(h) Python: numpy {size_label(NUMPY_BYTES)} echo, GB/s both ways", "python", "numpy",
        at_least(1, "GB/s")),
    Row("(h) Python: first task on a fresh pool, s", "python", "first_task"),
)

PYTHON_NOTE = ("(h): mpigate's columns are mpigate.futures' MPIPoolExecutor(max_workers=2), one "
               "client of a fresh mpigate-server of 2 workers; every pool runs the same Python "
               "function; a fresh pool's first task includes starting its interpreters (mpigate: "
               "one task runner's; mpi4py.futures: spawning its 2 workers; Dask: its LocalCluster)")

FLOOR_NOTE = ("(b) floors, each measured just before that pool's (b), with no pool: bare gRPC is "
              "bench/stream_api's sequential round trip on the Session stream (a single-task "
              "submit answered by one event, the callback API as the gateway uses it, one "
              "client thread writing then reading; the median of 3 fresh servers' p50), bare MPI "
              "bench/mpi_pingpong's round trip of 8 bytes between two processes of the MPI "
              "library the build links, under its mpiexec, both busy-polling, connected as a "
              "pool's gateway and workers are (Open MPI: one spawned by the other, which Open MPI "
              "4.1 joins over TCP; MPICH: one world), and the task runner hop (the default "
              "isolation's pool only) bench/runner_hop's round trip of a small echo task from a "
              "worker's RunnerProcess to a real mpigate-runner and back, with no MPI or gRPC; the "
              "floors' sum is of those a pool's task takes")

# Beside mpi4py's latency: what its figure is made of.
MPI4PY_POLL_NOTE = "mpi4py.futures' workers sleep up to ~1 ms between polls (its backoff)"


class Raw:
    """raw.csv, by (system, workload, metric): numbers, words (yes, no) and failures, each
    failure a pair (error or n/a, "system workload: why")."""

    def __init__(self, path):
        self.values, self.failures = {}, {}
        # (h)'s round trips on further fresh pools (compare.py's python_round_trips), by
        # (system, metric).
        more_round_trips = collections.defaultdict(list)
        with open(path, newline="", encoding="utf-8") as raw:
            for row in csv.DictReader(raw):
                key = (row["system"], row["workload"], row["metric"])
                if row["value"] in ("error", "n/a"):
                    self.failures[key] = (row["value"],
                                          f"{row['system']} {row['workload']}: {row['unit']}")
                elif row["workload"] == "python_round_trips":
                    more_round_trips[(row["system"], row["metric"])].append(float(row["value"]))
                else:
                    try:
                        self.values[key] = float(row["value"])
                    except ValueError:
                        self.values[key] = row["value"]
        # One pool's round trips keep to one of two levels for its life: (h)'s are the median
        # over its pool and the further ones.
        for (system, metric), values in more_round_trips.items():
            if is_number(first := self.values.get((system, "python", metric))):
                self.values[(system, "python", metric)] = statistics.median([first, *values])
        for system in SYSTEMS:
            self._derive(system, ("clients", "vs_single"), ("clients", "aggregate"),
                         ("throughput", "futures"))
            self._derive(system, ("idle", "after_idle_vs_hot"), ("idle", "first_task"),
                         ("idle", "hot_p50"))
            self._derive(system, ("latency", "vs_grpc"), ("latency", "p50"),
                         ("floor_grpc", "p50"))
            self._derive_floors_sum(system)

    def _derive(self, system, key, numerator, denominator):
        """key = numerator / denominator, or the failure of either."""
        top, bottom = self.get(system, *numerator), self.get(system, *denominator)
        if is_number(top) and is_number(bottom) and bottom:
            self.values[(system, *key)] = top / bottom
        elif failure := next((part for part in (top, bottom) if isinstance(part, tuple)), None):
            self.failures[(system, *key)] = failure

    def _derive_floors_sum(self, system):
        """latency floors_vs_grpc: the sum of the floors of the hops `system`'s tasks take (gRPC
        and MPI, and for the default isolation the task runner hop) over its bare gRPC p50; the
        failure of any of them."""
        hops = ("floor_grpc", "floor_mpi", *(("floor_runner",) if system == DEFAULT else ()))
        floors = [self.get(system, workload, "p50") for workload in hops]
        key = (system, "latency", "floors_vs_grpc")
        if failure := next((floor for floor in floors if isinstance(floor, tuple)), None):
            self.failures[key] = failure
        elif all(is_number(floor) for floor in floors) and floors[0]:
            self.values[key] = sum(floors) / floors[0]

    def get(self, system, workload, metric):
        """The value; else the failure (kind, why) of that metric or of its whole workload (or
        of the whole system); else None (not measured)."""
        for key in ((system, workload, metric), (system, workload, "*"), (system, "*", "*")):
            if key in self.values:
                return self.values[key]
            if key in self.failures:
                return self.failures[key]
        return None


def is_number(value):
    return isinstance(value, float)


def number(value):
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        # Not 3 significant digits: 10.003 s must not read as 10 next to a target of ≤10 s.
        return f"{value:.2f}"
    return f"{value:.3g}"


class Table:
    """The rows of the report, with footnotes for failures and remarks."""

    def __init__(self, raw):
        self.raw = raw
        self.notes = []

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
        return f"[{self.notes.index(text) + 1}]"

    def cell(self, system, row):
        value = self.raw.get(system, row.workload, row.metric)
        if value is None:
            return "—"
        if isinstance(value, tuple):
            kind, why = value
            return f"{kind} {self.note(why)}"
        text = value if not is_number(value) else f"{value:.0f}" if row.count else number(value)
        if system == "mpi4py" and row.metric == "p50":
            text += " " + self.note(MPI4PY_POLL_NOTE)
        return text

    def ratio(self, row, peer):
        mine = self.raw.get(DEFAULT, row.workload, row.metric)
        theirs = self.raw.get(peer, row.workload, row.metric)
        if not (row.compare and is_number(mine) and is_number(theirs) and theirs):
            return ""
        return f"{mine / theirs:.3g}x"

    def margin(self, system, row):
        """The target's margin for `system`, or None if it cannot be judged."""
        mine = self.raw.get(system, row.workload, row.metric)
        reference = self.raw.get("mpi4py", row.workload, row.metric)
        if isinstance(mine, tuple) or mine is None:
            return 0.0  # A workload that failed misses its target.
        try:
            return row.target.margin(mine, reference)
        except (TypeError, ZeroDivisionError):
            return None  # mpi4py's figure, needed for the judgement, is missing.

    def verdict(self, row):
        if row.target is None:
            return ""
        verdicts = {}
        for system in (DEFAULT, "mpigate-none"):
            margin = self.margin(system, row)
            verdicts[system] = "n/a" if margin is None else "PASS" if margin >= 1 else "FAIL"
        if verdicts["mpigate-none"] in (verdicts[DEFAULT], "n/a") or row.workload == "scale":
            return verdicts[DEFAULT]
        return f"{verdicts[DEFAULT]} (none: {verdicts['mpigate-none']})"

    def rows(self):
        """The rows of ROWS that the run measured (or tried to) on some system."""
        return [row for row in ROWS
                if any(self.raw.get(system, row.workload, row.metric) is not None
                       for system in SYSTEMS)]

    def lines(self):
        header = ("workload", *HEADERS, "mpigate / mpi4py", "mpigate / Dask", "target", "verdict")
        rows = [(row.label, *(self.cell(system, row) for system in SYSTEMS),
                 *(self.ratio(row, peer) for peer in PEERS),
                 row.target.text if row.target else "", self.verdict(row))
                for row in self.rows()]
        return [header, *rows]


def markdown(lines):
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    numeric = [i > 0 for i in range(len(widths))]

    def format_line(line):
        cells = (cell.rjust(width) if right else cell.ljust(width)
                 for cell, width, right in zip(line, widths, numeric))
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if right else ("-" * (w + 2))
                          for w, right in zip(widths, numeric)) + "|"
    return [format_line(lines[0]), rule, *(format_line(line) for line in lines[1:])]


def size_notes(raw):
    """What each system ran, where Dask ran less."""
    def sizes(system):
        return {metric: int(raw.values.get((system, "sizes", metric), 0))
                for metric in ("tasks", "samples", "client_tasks", "numpy_echoes")}
    mine, dask = sizes(DEFAULT), sizes("dask")
    text = (f"(a) {mine['tasks']:,} tasks, (b) {mine['samples']:,} round trips, "
            f"(d) {mine['client_tasks']:,} tasks in all")
    # Runs from before the spells were counted have no such row: one spell.
    if (spells := raw.values.get((DEFAULT, "sizes", "idle_spells"), 1)) > 1:
        text += (f", (e) the median of {spells:g} first tasks, each after "
                 f"{raw.values.get((DEFAULT, 'sizes', 'idle_seconds'), 0):g} s idle")
    if mine["numpy_echoes"]:  # Runs from before (h) have no such row.
        text += f", (h) as (a) and (b), and the median of {mine['numpy_echoes']} numpy echoes"
    if any(dask.values()) and dask != mine:
        text += (f"; Dask, 10-30x slower per task, ran fewer: {dask['tasks']:,} tasks, "
                 f"{dask['samples']:,} round trips and {dask['client_tasks']:,} tasks")
    return text + "."


def write_csv(table, path):
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("row", "workload", "metric", *SYSTEMS, "mpigate/mpi4py", "mpigate/dask",
                         "target", "verdict"))
        raw = table.raw
        for row in table.rows():
            values = []
            for system in SYSTEMS:
                value = raw.get(system, row.workload, row.metric)
                values.append(": ".join(value) if isinstance(value, tuple) else
                              "" if value is None else value)
            writer.writerow((row.label, row.workload, row.metric, *values,
                             *(table.ratio(row, peer) for peer in PEERS),
                             row.target.text if row.target else "", table.verdict(row)))


# The histograms of results.png: (data file, title, bars as (label, workload, metric)).
PLOTS = (
    ("throughput", "(a), (d) throughput of empty tasks, tasks/s (higher is better)",
     (("submit loop", "throughput", "futures"), ("map, chunks of 64", "throughput", "map64"),
      ("8 x 4 clients", "clients", "aggregate"))),
    ("latency", "(b), (e) round trip of an empty task, µs (lower is better)",
     (("p50", "latency", "p50"), ("p99", "latency", "p99"),
      ("bare gRPC p50", "floor_grpc", "p50"), ("bare MPI p50", "floor_mpi", "p50"),
      ("runner hop p50", "floor_runner", "p50"),
      ("first after idle", "idle", "first_task"))),
    ("payload", "(c), (h) echo, GB/s counting both ways (higher is better)",
     (*((size_label(size), "payload", str(size)) for size in PAYLOAD_SIZES),
      (f"numpy {size_label(NUMPY_BYTES)} (h)", "python", "numpy"))),
    ("python_throughput", "(h) a no-op Python function, tasks/s (higher is better)",
     (("submit loop", "python", "submit"), ("map, chunks of 64", "python", "map64"))),
    ("python_latency", "(h) round trip of a no-op Python function, µs (lower is better)",
     (("p50", "python", "p50"), ("p99", "python", "p99"))),
)


def write_plot(table, out_dir):
    """results.png: the histograms of PLOTS that have data, and the targets' margins. Needs
    gnuplot."""
    raw = table.raw

    def data_file(name, bars):
        """Writes name.dat, the bars with a number on some system; whether there was one."""
        measured = False
        with open(os.path.join(out_dir, f"{name}.dat"), "w", encoding="utf-8") as out:
            for label, workload, metric in bars:
                values = [raw.get(system, workload, metric) for system in SYSTEMS]
                numbers = [f"{value:g}" if is_number(value) and value > 0 else "?"
                           for value in values]
                if any(number != "?" for number in numbers):
                    measured = True
                    out.write(f'"{label}" ' + " ".join(numbers) + "\n")
        return measured

    plots = "".join(
        f'''set title "{title}"
plot for [i=2:5] "{out_dir}/{name}.dat" using i:xtic(1) title word(titles, i-1)
''' for name, title, bars in PLOTS if data_file(name, bars))
    with open(os.path.join(out_dir, "targets.dat"), "w", encoding="utf-8") as out:
        for row in table.rows():
            if row.target and row.target is not YES:
                margins = [table.margin(system, row) for system in (DEFAULT, "mpigate-none")]
                out.write(f'"{row.label.split(",")[0]}" ' + " ".join(
                    f"{m:g}" if m else "?" for m in margins) + "\n")

    columns = (plots.count("plot for") + 2) // 2  # Two rows of histograms and the targets.
    titles = " ".join(f'"{header}"' for header in HEADERS)
    script = f"""
set terminal pngcairo size {700 * columns},1000 font ",10"
set output "{out_dir}/results.png"
set datafile missing "?"
set multiplot layout 2,{columns} title "mpigate vs mpi4py.futures vs Dask, 2 workers each"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key below horizontal
titles = '{titles}'
set logscale y
{plots}set title "targets of the issues: margin, ≥1 passes (log scale)"
set xtics rotate by -30
plot 1 with lines lw 2 lc "black" title "target", \\
     for [i=2:3] "{out_dir}/targets.dat" using i:xtic(1) title word(titles, i-1)
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def write(raw_path, out_dir):
    """Prints the table and writes results.csv and results.png to `out_dir`, made if missing."""
    os.makedirs(out_dir, exist_ok=True)
    raw = Raw(raw_path)
    table = Table(raw)
    lines = markdown(table.lines())
    notes = [f"Ratios are mpigate (default, --isolation=process) / peer, from one run; for times "
             f"lower is better. {size_notes(raw)}"]
    if any(row.workload.startswith("floor") for row in table.rows()):
        notes.append(FLOOR_NOTE + ".")
    if any(row.workload == "python" for row in table.rows()):
        notes.append(PYTHON_NOTE + ".")
    leftover = raw.values.get(("run", "leftover", "processes"))
    if leftover is not None:
        notes.append("No process was left behind." if not leftover else
                     f"{leftover:.0f} processes were left behind (killed at the end).")
    minutes = raw.values.get(("run", "duration", "minutes"))
    if minutes is not None:
        notes.append(f"The run took {minutes:g} min.")
    load = [raw.values.get(("run", "load", when)) for when in ("start", "end", "cores")]
    if None not in load:
        waited = raw.values.get(("run", "settle", "waited"))
        settled = f" (after {waited:g} s waiting for it to fall)" if waited else ""
        notes.append(f"The machine's load average (1 min) was {load[0]:.2f} when it "
                     f"began{settled} and {load[1]:.2f} at its end, on {load[2]:.0f} cores.")
    print("\n".join(lines))
    print()
    for i, text in enumerate(table.notes, 1):
        print(f"[{i}] {text}")
    print(" ".join(notes))
    write_csv(table, os.path.join(out_dir, "results.csv"))
    write_plot(table, out_dir)


# ---- The guard: a run against a committed baseline ----------------------------------------------


# What a guarded figure is a ratio to (the baseline's column ratio_to), and its name in reports.
# "mpi4py": the guard divides the figure by mpi4py.futures' of the same run; the others are
# ratios already, guarded as they are: "grpc" to the bare gRPC round trip of the same run,
# "itself" to the same pool's other figure (or, for the idle CPU, no ratio at all).
RATIO_TO = {"mpi4py": "mpi4py.futures", "grpc": "bare gRPC", "itself": "itself",
            "machine": "µs on this machine"}


@dataclasses.dataclass(frozen=True)
class Guard:
    """A figure the baseline holds, for mpigate and for mpigate-none. Guarded as a ratio to a
    figure of the same run, where machine speed cancels: to mpi4py.futures', or, where it is
    already a ratio (to the bare gRPC floor, of mpigate to itself), or an idle pool's CPU share,
    as it is."""

    workload: str
    metric: str
    higher_is_better: bool
    ratio_to: str = "mpi4py"
    # The figure's resolution, allowed on top of the tolerance: an idle pool's CPU share is
    # counted in clock ticks of 10 ms, 0.1% of a core over the 10 s it is measured.
    resolution: float = 0.0

    @property
    def judged(self):
        """False for the machine's own figures (ratio_to "machine"), which are never failed."""
        return self.ratio_to != "machine"


GUARDS = (
    Guard("throughput", "futures", higher_is_better=True),
    Guard("throughput", "map64", higher_is_better=True),
    Guard("latency", "p50", higher_is_better=False),
    Guard("latency", "p99", higher_is_better=False),
    *(Guard("payload", str(size), higher_is_better=True) for size in PAYLOAD_SIZES),
    # The floor target: as mpi4py.futures' p50 is mostly its workers' polling backoff,
    # this is the tighter measure of mpigate's own cost per round trip.
    Guard("latency", "vs_grpc", higher_is_better=False, ratio_to="grpc"),
    Guard("clients", "vs_single", higher_is_better=True, ratio_to="itself"),
    Guard("idle", "cpu", higher_is_better=False, ratio_to="itself", resolution=0.1),
    Guard("idle", "hot_p50", higher_is_better=False),
    Guard("idle", "first_task", higher_is_better=False),
    Guard("start", "first_task", higher_is_better=False),
    Guard("python", "submit", higher_is_better=True),
    Guard("python", "map64", higher_is_better=True),
    Guard("python", "p50", higher_is_better=False),
    Guard("python", "p99", higher_is_better=False),
    Guard("python", "numpy", higher_is_better=True),
    Guard("python", "first_task", higher_is_better=False),
    # The machine's state, as it is: the floors, which no change of mpigate's moves. A run whose
    # floors are slower than the baseline's runs' was made on a slower or busier machine, where
    # the figures of many hops (mpigate's latencies) suffer more than mpi4py.futures' (mostly its
    # polling backoff): check() says so beside the figures it names, never fails them.
    Guard("floor_grpc", "p50", higher_is_better=False, ratio_to="machine"),
    Guard("floor_mpi", "p50", higher_is_better=False, ratio_to="machine"),
    Guard("floor_runner", "p50", higher_is_better=False, ratio_to="machine"),
)
GUARDED_SYSTEMS = ("mpigate", "mpigate-none")
BASELINE_FIELDS = ("system", "workload", "metric", "ratio_to", "better", "baseline", "tolerance",
                   "runs")
# The least tolerance of any figure: a run may be this much worse than the baseline and pass.
MIN_TOLERANCE = 0.25
# A figure's tolerance is at least this multiple of how much worse than their median the
# baseline's worst run was, rounded up to 5%. "Worse by X" is a factor either way: a throughput
# 1 + X times lower, a time 1 + X times longer.
SPREAD_FACTOR = 1.5


def guarded_value(raw, system, guard):
    """The figure `guard` guards for `system`: a number, or a failure (kind, why), or None."""
    mine = raw.get(system, guard.workload, guard.metric)
    if guard.ratio_to != "mpi4py" or not is_number(mine):
        return mine
    theirs = raw.get("mpi4py", guard.workload, guard.metric)
    if is_number(theirs) and theirs:
        return mine / theirs
    return theirs if isinstance(theirs, tuple) else ("n/a", "mpi4py.futures' figure is missing")


def row_label(workload, metric):
    return next((row.label for row in ROWS if (row.workload, row.metric) == (workload, metric)),
                f"{workload} {metric}")


@dataclasses.dataclass(frozen=True)
class Baseline:
    """One row of baseline.csv: the figure's value in the baseline's runs (their median), how much
    worse a run may be (a fraction of it), and the runs' own values."""

    system: str
    guard: Guard
    value: float
    tolerance: float
    runs: tuple = ()

    def limit(self):
        """The worst value that passes."""
        if self.guard.higher_is_better:
            return self.value / (1 + self.tolerance) - self.guard.resolution
        return self.value * (1 + self.tolerance) + self.guard.resolution

    def passes(self, value):
        return value >= self.limit() if self.guard.higher_is_better else value <= self.limit()


def read_baseline(path):
    """baseline.csv as Baseline rows; lines starting with # are comments."""
    with open(path, newline="", encoding="utf-8") as source:
        lines = [line for line in source if not line.startswith("#")]
    rows = []
    resolutions = {(guard.workload, guard.metric): guard.resolution for guard in GUARDS}
    for row in csv.DictReader(lines):
        if row["ratio_to"] not in RATIO_TO:
            raise ValueError(f"{path}: ratio_to {row['ratio_to']!r} is none of "
                             f"{', '.join(RATIO_TO)}")
        guard = Guard(row["workload"], row["metric"], higher_is_better=row["better"] == "higher",
                      ratio_to=row["ratio_to"],
                      resolution=resolutions.get((row["workload"], row["metric"]), 0.0))
        runs = tuple(float(value) for value in row["runs"].split())
        rows.append(Baseline(row["system"], guard, float(row["baseline"]),
                             float(row["tolerance"]), runs))
    return rows


def write_baseline(rows, path, comment=""):
    with open(path, "w", newline="", encoding="utf-8") as out:
        for line in comment.splitlines():
            out.write(f"# {line}\n")
        writer = csv.writer(out)
        writer.writerow(BASELINE_FIELDS)
        for row in rows:
            writer.writerow((row.system, row.guard.workload, row.guard.metric,
                             row.guard.ratio_to,
                             "higher" if row.guard.higher_is_better else "lower",
                             f"{row.value:.4g}", f"{row.tolerance:.2f}",
                             " ".join(f"{value:.4g}" for value in row.runs)))


def worse_factor(value, baseline, higher_is_better):
    """How many times worse than `baseline` `value` is (1 or less: not worse)."""
    if higher_is_better:
        return baseline / value if value > 0 else math.inf
    return value / baseline if baseline > 0 else (1.0 if value <= 0 else math.inf)


def tolerance_of(values, higher_is_better):
    """The tolerance that the spread of `values` (one figure over several runs) justifies."""
    middle = statistics.median(values)
    worst = max(worse_factor(value, middle, higher_is_better) for value in values) - 1
    if not math.isfinite(worst):
        return math.inf
    return max(MIN_TOLERANCE, math.ceil(SPREAD_FACTOR * worst * 20 - 1e-9) / 20)


def make_baseline(raws, tolerances=None):
    """Baseline rows from several runs (Raw): each figure's median over the runs that measured
    it, with the tolerance its spread justifies, or, for a figure in `tolerances` (a dict of
    (system, workload, metric) to tolerance: an earlier baseline's), that one when fewer than
    three runs measured it."""
    rows = []
    for guard in GUARDS:
        for system in GUARDED_SYSTEMS:
            values = [value for value in (guarded_value(raw, system, guard) for raw in raws)
                      if is_number(value)]
            if not values:
                continue
            key = (system, guard.workload, guard.metric)
            tolerance = (tolerances[key] if tolerances and key in tolerances and len(values) < 3
                         else tolerance_of(values, guard.higher_is_better))
            rows.append(Baseline(system, guard, statistics.median(values), tolerance,
                                 tuple(values)))
    return rows


def spread_of(row):
    """How much worse than their median the baseline's worst run was (a factor, less 1)."""
    if not row.runs:
        return 0.0
    return max(worse_factor(value, row.value, row.guard.higher_is_better)
               for value in row.runs) - 1


def summary_lines(rows):
    """A Markdown table of baseline rows: each figure's runs, their median, spread, tolerance."""
    lines = [("figure", "system", "ratio to", "runs", "median", "worst run", "tolerance")]
    for row in rows:
        lines.append((row_label(row.guard.workload, row.guard.metric), row.system,
                      RATIO_TO[row.guard.ratio_to],
                      " ".join(f"{value:.3g}" for value in row.runs), f"{row.value:.3g}",
                      f"{spread_of(row):.0%}", f"{row.tolerance:.0%}"))
    return markdown(lines)


# What bench/compare.py can measure again of a system: "core", its (a)-(f), or "python", its (h).
CORE, PYTHON = "core", "python"


@dataclasses.dataclass
class Check:
    """A run and its re-measurements against a baseline: a line per figure, a line per figure
    that fails, a hint when the machine itself was slower, and the figures one more measurement
    could still decide otherwise (`unsettled`, Baseline rows)."""

    lines: list
    failures: list
    hint: str
    unsettled: list


def check(baseline, raws):
    """The run `raws[0]` and its re-measurements `raws[1:]` (Raw each; one that did not measure a
    figure does not count for it) against `baseline`. A figure's value is the median of its
    measurements, and it fails when that is worse than its baseline by more than its tolerance,
    or when a run failed to measure it. It is unsettled while exactly one of its measurements
    failed and fewer than two passed: a further measurement decides it, two of three."""
    lines, failures, slower_machine, unsettled = [], [], [], []
    for row in baseline:
        guard = row.guard
        name = f"{row_label(guard.workload, guard.metric)} [{row.system}]"
        unit = {"itself": "", "machine": " us"}.get(guard.ratio_to,
                                                    f"x {RATIO_TO[guard.ratio_to]}")
        measured = [guarded_value(raw, row.system, guard) for raw in raws]
        numbers = [value for value in measured if is_number(value)]
        failed = next((value for value in measured if isinstance(value, tuple)), None)
        if failed or not numbers:
            if guard.judged:
                failures.append(f"{name}: no figure ({failed[1] if failed else 'not measured'})")
            continue
        value = statistics.median(numbers)
        direction = "at least" if guard.higher_is_better else "at most"
        text = (f"{name}: {value:.3g}{unit}, baseline {row.value:.3g}{unit}, "
                f"tolerance {row.tolerance:.0%}: {direction} {row.limit():.3g}{unit}")
        if len(numbers) > 1:
            text += f" (median of {' '.join(f'{number:.3g}' for number in numbers)})"
        passed = row.passes(value)
        if not guard.judged:
            lines.append(("info   " if passed else "SLOWER ") + text)
            if not passed:
                slower_machine.append(f"{name} {value:.3g}{unit} (baseline {row.value:.3g}{unit})")
            continue
        worse = sum(not row.passes(number) for number in numbers)
        if worse == 1 and len(numbers) - worse < 2:
            unsettled.append(row)
        lines.append(("ok     " if passed else "WORSE  ") + text)
        if not passed:
            failures.append(text)
    hint = ""
    if failures and slower_machine:
        hint = (f"The machine itself was slower than in the baseline's runs: "
                f"{', '.join(slower_machine)}. Before reading the figures above as a regression, "
                f"compare the change with the baseline's commit side by side: bench/ab_trees.py.")
    return Check(lines, failures, hint, unsettled)


def parts_to_measure_again(rows):
    """What bench/compare.py runs again to measure the figures `rows` (Baseline rows) once more:
    (system, CORE or PYTHON) pairs, with mpi4py.futures' same part where a figure is a ratio to
    it, so that both sides of the ratio come from the same minutes of the machine."""
    parts = set()
    for row in rows:
        part = PYTHON if row.guard.workload == "python" else CORE
        parts.add((row.system, part))
        if row.guard.ratio_to == "mpi4py":
            parts.add(("mpi4py", part))
    return parts


def print_check(baseline_path, raws):
    """Prints the check of `raws` (a run and its re-measurements) against the baseline at
    `baseline_path`; True if it passed."""
    result = check(read_baseline(baseline_path), raws)
    again = f", measured {len(raws)} times where a run was worse" if len(raws) > 1 else ""
    print(f"\nAgainst the baseline {baseline_path}{again}:")
    print("\n".join(result.lines))
    if result.failures:
        print(f"\n{len(result.failures)} figure(s) worse than the baseline by more than the "
              f"tolerance:")
        print("\n".join(f"- {failure}" for failure in result.failures))
        if result.hint:
            print(f"\n{result.hint}")
    else:
        print("\nEvery figure is within its tolerance of the baseline.")
    return not result.failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="*", help="RAW_CSV OUT_DIR, or with --make-baseline RAW_CSV...")
    parser.add_argument("--check", metavar="BASELINE",
                        help="compare the run with BASELINE; exit 1 if a figure is worse")
    parser.add_argument("--again", nargs="+", default=[], metavar="RAW_CSV",
                        help="with --check: the run's re-measurements (compare.py's "
                        "OUT_DIR/again1/raw.csv, ...)")
    parser.add_argument("--make-baseline", metavar="BASELINE",
                        help="write BASELINE from the runs RAW_CSV...")
    parser.add_argument("--tolerances-from", metavar="OLD",
                        help="with --make-baseline of fewer than 3 runs: OLD's tolerances")
    parser.add_argument("--comment", default="", help="with --make-baseline: how the runs were made")
    parser.add_argument("--summary", metavar="MARKDOWN",
                        help="with --make-baseline: also write the comment and the runs' spread")
    args = parser.parse_args()
    if args.make_baseline:
        if not args.raw:
            parser.error("--make-baseline needs one or more RAW_CSV")
        old = ({(row.system, row.guard.workload, row.guard.metric): row.tolerance
                for row in read_baseline(args.tolerances_from)} if args.tolerances_from else None)
        rows = make_baseline([Raw(path) for path in args.raw], old)
        write_baseline(rows, args.make_baseline, args.comment)
        if args.summary:
            with open(args.summary, "w", encoding="utf-8") as out:
                out.write("# The runs of bench/results/baseline.csv\n\n")
                if args.comment:
                    out.write(args.comment.strip() + "\n\n")
                out.write(f"Each figure's runs, their median (the baseline), how much worse "
                          f"than it the worst run was (a throughput that many times lower, a "
                          f"time that many times longer), and the tolerance: at least "
                          f"{MIN_TOLERANCE:.0%}, else {SPREAD_FACTOR:g} times that, rounded up "
                          f"to 5%. A run fails a figure worse than the baseline by more than its "
                          f"tolerance.\n\n")
                out.write("\n".join(summary_lines(rows)) + "\n")
        return
    if len(args.raw) != 2:
        parser.error("RAW_CSV OUT_DIR")
    write(*args.raw)
    if args.check and not print_check(args.check,
                                      [Raw(path) for path in args.raw[:1] + args.again]):
        sys.exit(1)


if __name__ == "__main__":
    main()
