"""bench/report.py's table for the Python workloads (h) of bench/compare.py: which rows a run shows,
the ratios, and the issue's targets judged PASS or FAIL, from raw.csv lines as compare.py writes
them. Pure logic: no pool, no gnuplot."""

import unittest

from bench_raw import raw_from, report


def python_rows(system, submit, map64, p50, numpy, first_task=0.2):
    return [(system, "python", "submit", submit, "tasks/s"),
            (system, "python", "map64", map64, "items/s"),
            (system, "python", "p50", p50, "us"),
            (system, "python", "p99", p50 * 3, "us"),
            (system, "python", "numpy", numpy, "GB/s"),
            (system, "python", "first_task", first_task, "s")]


PEERS = (python_rows("mpi4py", submit=5000, map64=200_000, p50=350, numpy=0.5, first_task=0.7) +
         python_rows("dask", submit=400, map64=4000, p50=11_000, numpy=0.1, first_task=2.0))


def both_isolations(**figures):
    """The same figures for mpigate and mpigate-none (a verdict judges both)."""
    return python_rows("mpigate", **figures) + python_rows("mpigate-none", **figures)


def table_of(rows):
    table = report.Table(raw_from(rows))
    lines = table.lines()
    return {line[0]: dict(zip(lines[0], line)) for line in lines[1:]}


class PythonRowsTest(unittest.TestCase):

    def test_a_python_only_run_shows_only_the_python_rows(self):
        rows = table_of(both_isolations(submit=30_000, map64=500_000, p50=300, numpy=1.5) + PEERS)
        self.assertEqual(len(rows), 6)
        self.assertTrue(all(label.startswith("(h) Python: ") for label in rows))

    def test_targets_met(self):
        rows = table_of(both_isolations(submit=30_000, map64=500_000, p50=300, numpy=1.5) + PEERS)
        self.assertEqual(rows["(h) Python: submit loop, tasks/s"]["verdict"], "PASS")
        self.assertEqual(rows["(h) Python: submit loop, tasks/s"]["mpigate / mpi4py"], "6x")
        self.assertEqual(rows["(h) Python: map, chunksize 64, items/s"]["verdict"], "PASS")
        self.assertEqual(rows["(h) Python: round trip p50, µs"]["verdict"], "PASS")
        self.assertEqual(rows["(h) Python: numpy 64 MiB echo, GB/s both ways"]["verdict"], "PASS")
        # Information only: no target.
        self.assertEqual(rows["(h) Python: first task on a fresh pool, s"]["verdict"], "")
        self.assertEqual(rows["(h) Python: round trip p99, µs"]["verdict"], "")

    def test_targets_missed(self):
        # 4.9x mpi4py's submit loop, 1.9x its map, a p50 above its own, 0.9 GB/s.
        rows = table_of(both_isolations(submit=24_500, map64=380_000, p50=351, numpy=0.9) + PEERS)
        for label in ("(h) Python: submit loop, tasks/s", "(h) Python: map, chunksize 64, items/s",
                      "(h) Python: round trip p50, µs",
                      "(h) Python: numpy 64 MiB echo, GB/s both ways"):
            self.assertEqual(rows[label]["verdict"], "FAIL", label)

    def test_isolation_none_judged_beside_the_default(self):
        rows = table_of(python_rows("mpigate", 30_000, 500_000, 300, 1.5) +
                        python_rows("mpigate-none", 20_000, 500_000, 300, 1.5) + PEERS)
        self.assertEqual(rows["(h) Python: submit loop, tasks/s"]["verdict"], "PASS (none: FAIL)")

    def test_a_failed_run_misses_every_target_and_says_why(self):
        table = report.Table(raw_from(
            [("mpigate", "python", "*", "error", "mpigate-server exited")] + PEERS))
        lines = table.lines()
        for line in lines[1:]:
            row = dict(zip(lines[0], line))
            self.assertEqual(row["mpigate"], "error [1]", row["workload"])
            self.assertIn(row["verdict"], ("FAIL", ""), row["workload"])
        self.assertEqual(table.notes[0], "mpigate python: mpigate-server exited")

    def test_round_trips_are_the_median_over_the_fresh_pools(self):
        # The first pool in its slow level (420 us, a FAIL alone), two more in the fast one.
        rows = python_rows("mpigate", 30_000, 500_000, 420, 1.5) + [
            ("mpigate", "python_round_trips", "p50", 290, "us"),
            ("mpigate", "python_round_trips", "p99", 900, "us"),
            ("mpigate", "python_round_trips", "p50", 300, "us"),
            ("mpigate", "python_round_trips", "p99", 1000, "us")]
        raw = raw_from(rows + PEERS)
        self.assertEqual(raw.get("mpigate", "python", "p50"), 300)
        self.assertEqual(raw.get("mpigate", "python", "p99"), 1000)  # of 1260, 900, 1000
        # The rest of (h) is the first pool's alone.
        self.assertEqual(raw.get("mpigate", "python", "submit"), 30_000)
        rows = table_of(rows + python_rows("mpigate-none", 30_000, 500_000, 300, 1.5) + PEERS)
        self.assertEqual(rows["(h) Python: round trip p50, µs"]["verdict"], "PASS")

    def test_a_failed_further_pool_leaves_the_first_pools_round_trips(self):
        raw = raw_from(python_rows("mpigate", 30_000, 500_000, 420, 1.5) + [
            ("mpigate", "python_round_trips", "*", "error", "mpigate-server exited")] + PEERS)
        self.assertEqual(raw.get("mpigate", "python", "p50"), 420)

    def test_a_run_without_python_workloads_has_no_python_rows(self):
        rows = table_of([("mpigate", "latency", "p50", 200, "us"),
                         ("mpi4py", "latency", "p50", 350, "us")])
        self.assertEqual(list(rows), ["(b) latency p50, µs"])


def latency_rows(system, p50, grpc_p50, mpi_p50=0.6, runner_p50=None):
    """(b) of a pool: its p50 and p99, and the floors measured beside it."""
    runner = [] if runner_p50 is None else [(system, "floor_runner", "p50", runner_p50, "us"),
                                            (system, "floor_runner", "p99", runner_p50 * 2, "us")]
    return [(system, "latency", "p50", p50, "us"),
            (system, "latency", "p99", p50 * 3, "us"),
            (system, "floor_grpc", "p50", grpc_p50, "us"),
            (system, "floor_grpc", "p99", grpc_p50 * 2, "us"),
            (system, "floor_mpi", "p50", mpi_p50, "us"),
            (system, "floor_mpi", "p99", mpi_p50 * 2, "us"), *runner]


PEER_LATENCY = [("mpi4py", "latency", "p50", 400, "us"), ("mpi4py", "latency", "p99", 900, "us")]

FLOOR_LABELS = ("(b) floor: bare gRPC round trip p50, µs", "(b) floor: bare MPI ping-pong p50, µs")
VS_GRPC = "(b) latency p50 / bare gRPC p50"
RUNNER_FLOOR = "(b) floor: task runner hop p50, µs"
FLOORS_SUM = "(b) the floors' sum / bare gRPC p50"


class FloorRowsTest(unittest.TestCase):

    def test_the_floors_show_their_absolute_p50_in_each_pools_column(self):
        rows = table_of(latency_rows("mpigate", 150, 70, 0.61) +
                        latency_rows("mpigate-none", 130, 65, 0.58) + PEER_LATENCY)
        grpc, mpi = (rows[label] for label in FLOOR_LABELS)
        self.assertEqual((grpc["mpigate"], grpc["mpigate --isolation=none"]), ("70.00", "65.00"))
        self.assertEqual((mpi["mpigate"], mpi["mpigate --isolation=none"]), ("0.61", "0.58"))
        for row in (grpc, mpi):
            self.assertEqual((row["mpi4py.futures"], row["Dask"]), ("—", "—"))
            self.assertEqual((row["mpigate / mpi4py"], row["target"], row["verdict"]), ("", "", ""))

    def test_p50_over_the_grpc_floor_passes_at_most_twice(self):
        rows = table_of(latency_rows("mpigate", 140, 70) + latency_rows("mpigate-none", 130, 70) +
                        PEER_LATENCY)
        self.assertEqual(rows[VS_GRPC]["mpigate"], "2.00")
        self.assertEqual(rows[VS_GRPC]["mpigate --isolation=none"], "1.86")
        self.assertEqual(rows[VS_GRPC]["target"], "≤2x")
        self.assertEqual(rows[VS_GRPC]["verdict"], "PASS")
        self.assertEqual(rows[VS_GRPC]["mpigate / mpi4py"], "")  # not a figure to compare

    def test_p50_over_the_grpc_floor_fails_past_twice(self):
        rows = table_of(latency_rows("mpigate", 141, 70) + latency_rows("mpigate-none", 130, 70) +
                        PEER_LATENCY)
        self.assertEqual(rows[VS_GRPC]["verdict"], "FAIL (none: PASS)")

    def test_a_failed_floor_fails_the_target_and_says_why(self):
        table = report.Table(raw_from(
            [("mpigate", "latency", "p50", 140, "us"),
             ("mpigate", "floor_grpc", "*", "error", "stream_api: exit status 1")] + PEER_LATENCY))
        lines = table.lines()
        rows = {line[0]: dict(zip(lines[0], line)) for line in lines[1:]}
        note = f"[{table.notes.index('mpigate floor_grpc: stream_api: exit status 1') + 1}]"
        self.assertEqual(rows[FLOOR_LABELS[0]]["mpigate"], f"error {note}")
        self.assertEqual(rows[VS_GRPC]["mpigate"], f"error {note}")
        self.assertEqual(rows[VS_GRPC]["verdict"], "FAIL")

    def test_the_floors_sum_counts_the_runner_hop_of_the_default_pool_only(self):
        rows = table_of(latency_rows("mpigate", 300, 80, 12, runner_p50=68) +
                        latency_rows("mpigate-none", 200, 100, 20) + PEER_LATENCY)
        self.assertEqual(rows[RUNNER_FLOOR]["mpigate"], "68.00")
        self.assertEqual(rows[RUNNER_FLOOR]["mpigate --isolation=none"], "—")  # no runner
        sums = rows[FLOORS_SUM]
        self.assertEqual(sums["mpigate"], "2.00")  # (80 + 12 + 68) / 80
        self.assertEqual(sums["mpigate --isolation=none"], "1.20")  # (100 + 20) / 100
        # Information, not a target: what (b)'s own target is up against.
        self.assertEqual((sums["target"], sums["verdict"], sums["mpigate / mpi4py"]), ("", "", ""))

    def test_the_default_pools_floors_sum_needs_its_runner_hop(self):
        rows = table_of(latency_rows("mpigate", 300, 80, 12) + PEER_LATENCY)
        self.assertNotIn(FLOORS_SUM, rows)
        table = report.Table(raw_from(
            latency_rows("mpigate", 300, 80, 12) +
            [("mpigate", "floor_runner", "*", "error", "runner_hop: exit status 1")] + PEER_LATENCY))
        lines = table.lines()
        rows = {line[0]: dict(zip(lines[0], line)) for line in lines[1:]}
        note = f"[{table.notes.index('mpigate floor_runner: runner_hop: exit status 1') + 1}]"
        self.assertEqual(rows[FLOORS_SUM]["mpigate"], f"error {note}")

    def test_many_clients_against_one_pass_at_eight_tenths(self):
        def clients(vs_single):
            return table_of([(system, *figure) for system in ("mpigate", "mpigate-none")
                             for figure in (("throughput", "futures", 100_000, "tasks/s"),
                                            ("clients", "aggregate", 100_000 * vs_single,
                                             "tasks/s"))])
        label = "(d) that / one client's submit loop"
        self.assertEqual(clients(0.8)[label]["target"], "≥0.8 (80%)")
        self.assertEqual(clients(0.8)[label]["verdict"], "PASS")
        self.assertEqual(clients(0.79)[label]["verdict"], "FAIL")


def idle_rows(system, hot_p50, first_task):
    return [(system, "idle", "cpu", 0.2, "%"), (system, "idle", "hot_p50", hot_p50, "us"),
            (system, "idle", "first_task", first_task, "us"),
            (system, "idle", "after_idle_vs_hot", first_task / hot_p50, "")]


class IdleRowsTest(unittest.TestCase):
    """Issue 25's target for the first task after an idle spell: at most half mpi4py.futures'."""

    FIRST = "(e) first task after idle, µs"

    def test_half_of_mpi4pys_first_task_passes_and_more_fails(self):
        peer = idle_rows("mpi4py", 350, 3000)
        rows = table_of(idle_rows("mpigate", 120, 1500) + idle_rows("mpigate-none", 100, 1501) +
                        peer)
        self.assertEqual(rows[self.FIRST]["target"], "≤0.5x mpi4py")
        self.assertEqual(rows[self.FIRST]["verdict"], "PASS (none: FAIL)")
        # Against its own hot p50 it is information only: a wake-up of ten processes.
        ratio = rows["(e) first after idle / hot p50"]
        self.assertEqual((ratio["target"], ratio["verdict"]), ("", ""))

    def test_the_notes_say_how_many_idle_spells_the_figure_is_the_median_of(self):
        sizes = [("mpigate", "sizes", "idle_seconds", 10, ""),
                 ("mpigate", "sizes", "idle_spells", 3, "")]
        self.assertIn("(e) the median of 3 first tasks, each after 10 s idle",
                      report.size_notes(raw_from(sizes)))
        # One spell (and runs from before spells were counted): nothing to say.
        self.assertNotIn("(e)", report.size_notes(raw_from(sizes[:1])))
        self.assertNotIn("(e)", report.size_notes(raw_from(
            [sizes[0], ("mpigate", "sizes", "idle_spells", 1, "")])))


if __name__ == "__main__":
    unittest.main()
