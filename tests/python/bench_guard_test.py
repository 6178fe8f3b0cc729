"""bench/report.py's guard (bench/compare.sh --check): a run's ratios to mpi4py.futures against a
committed baseline, each figure with its tolerance, and a baseline made from several runs with
tolerances from their spread. Pure logic: raw.csv lines as compare.py writes them, no pool."""

import os
import tempfile
import unittest

from bench_raw import raw_from, report


def run(first_task_us=500.0, submit=90_000.0, idle_cpu=0.1, mpi4py_first_task_us=2_500.0,
        mpi4py_submit=5_000.0, vs_single=0.8):
    """A run's lines: mpigate's and mpi4py.futures' first task after idle and submit loop, and
    mpigate's (d) ratio and idle CPU."""
    return raw_from([
        ("mpigate", "idle", "first_task", first_task_us, "us"),
        ("mpi4py", "idle", "first_task", mpi4py_first_task_us, "us"),
        ("mpigate", "throughput", "futures", submit, "tasks/s"),
        ("mpi4py", "throughput", "futures", mpi4py_submit, "tasks/s"),
        ("mpigate", "clients", "aggregate", submit * vs_single, "tasks/s"),
        ("mpigate", "idle", "cpu", idle_cpu, "% of one core"),
    ])


def guard(workload, metric):
    return next(g for g in report.GUARDS if (g.workload, g.metric) == (workload, metric))


# A baseline: first task after idle 0.2x mpi4py's (lower is better), submit loop 18x (higher is
# better), (d) 0.8 of one client, idle CPU 0.1% of a core.
BASELINE = [
    report.Baseline("mpigate", guard("idle", "first_task"), 0.2, 0.5),
    report.Baseline("mpigate", guard("throughput", "futures"), 18.0, 0.25),
    report.Baseline("mpigate", guard("clients", "vs_single"), 0.8, 0.25),
    report.Baseline("mpigate", guard("idle", "cpu"), 0.1, 0.25),
]


def failures_of(raw, baseline=None):
    return report.check(baseline or BASELINE, [raw]).failures


class CheckTest(unittest.TestCase):

    def test_a_run_like_the_baseline_passes(self):
        self.assertEqual(failures_of(run()), [])

    def test_a_slower_machine_passes_when_the_ratios_hold(self):
        # Everything twice as slow, mpi4py.futures too: the same ratios.
        self.assertEqual(failures_of(run(first_task_us=1_000, submit=45_000,
                                         mpi4py_first_task_us=5_000, mpi4py_submit=2_500)), [])

    def test_worse_within_the_tolerance_passes(self):
        # 0.28x against 0.2x with 50%: at most 0.3x. 15x against 18x with 25%: at least 14.4x.
        self.assertEqual(failures_of(run(first_task_us=700, submit=75_000)), [])

    def test_a_latency_past_its_tolerance_fails_and_is_named(self):
        # 14 ms against mpi4py's 2.5 ms: 5.6x, where the baseline is 0.2x (issue 25's regression).
        failures = failures_of(run(first_task_us=14_000))
        self.assertEqual(len(failures), 1)
        self.assertIn("(e) first task after idle", failures[0])
        self.assertIn("[mpigate]", failures[0])

    def test_a_throughput_past_its_tolerance_fails(self):
        failures = failures_of(run(submit=70_000))  # 14x against 18x, at least 14.4x
        self.assertEqual(len(failures), 1)
        self.assertIn("(a) submit loop", failures[0])

    def test_each_worse_figure_is_named(self):
        failures = failures_of(run(first_task_us=14_000, submit=60_000, vs_single=0.5))
        self.assertEqual(len(failures), 3)

    def test_better_than_the_baseline_passes(self):
        self.assertEqual(failures_of(run(first_task_us=100, submit=200_000, vs_single=1.0)), [])

    def test_a_ratio_to_itself_is_not_divided_by_mpi4py(self):
        self.assertEqual(failures_of(run(vs_single=0.7)), [])  # at least 0.64
        self.assertEqual(len(failures_of(run(vs_single=0.6))), 1)

    def test_idle_cpu_is_allowed_one_clock_tick(self):
        # 0.1% is one 10 ms tick over the 10 s measured: 0.2% passes, 0.3% does not.
        self.assertEqual(failures_of(run(idle_cpu=0.2)), [])
        self.assertEqual(len(failures_of(run(idle_cpu=0.3))), 1)

    def test_a_figure_the_run_lacks_fails(self):
        raw = raw_from([("mpigate", "idle", "first_task", 500, "us"),
                        ("mpi4py", "idle", "first_task", 2_500, "us")])
        failures = failures_of(raw)
        self.assertEqual(len(failures), 3)
        self.assertTrue(all("no figure" in failure for failure in failures))

    def test_a_failed_workload_fails_with_its_reason(self):
        raw = raw_from([("mpigate", "idle", "*", "error", "not done within its time limit"),
                        ("mpi4py", "idle", "first_task", 2_500, "us")])
        failures = failures_of(raw, BASELINE[:1])
        self.assertEqual(len(failures), 1)
        self.assertIn("not done within its time limit", failures[0])


class BaselineTest(unittest.TestCase):

    def test_tolerance_is_at_least_the_floor(self):
        self.assertEqual(report.tolerance_of([1.0, 1.01, 0.99, 1.0, 1.02], True), 0.25)

    def test_tolerance_follows_the_worst_run(self):
        # A time 1.4 times the median: 1.5 x 40% = 60%. Faster runs do not count.
        self.assertAlmostEqual(report.tolerance_of([1.0, 1.4, 0.5, 1.0, 1.1], False), 0.6)
        # A throughput 2 times lower than the median: 1.5 x 100% = 150%, whose limit (the
        # median / 2.5) stays above zero. Faster runs do not count.
        self.assertAlmostEqual(report.tolerance_of([10, 5, 30, 10, 12], True), 1.5)

    def test_made_from_runs_median_and_spread(self):
        runs = [run(first_task_us=us) for us in (400, 500, 600, 500, 450)]
        rows = {(row.system, row.guard.workload, row.guard.metric): row
                for row in report.make_baseline(runs)}
        first = rows[("mpigate", "idle", "first_task")]
        self.assertAlmostEqual(first.value, 0.2)
        self.assertAlmostEqual(first.tolerance, 0.3)  # 0.24 is 1.2x 0.2: 1.5 x 20%
        self.assertEqual(len(first.runs), 5)
        # mpigate-none did not run: no row for it.
        self.assertNotIn(("mpigate-none", "idle", "first_task"), rows)

    def test_written_and_read_back(self):
        rows = report.make_baseline([run(), run(first_task_us=600)])
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "baseline.csv")
            report.write_baseline(rows, path, "two runs\nof a test")
            with open(path, encoding="utf-8") as written:
                self.assertTrue(written.readline().startswith("# two runs"))
            again = report.read_baseline(path)
        self.assertEqual([(r.system, r.guard, r.tolerance) for r in again],
                         [(r.system, r.guard, r.tolerance) for r in rows])
        self.assertEqual(report.check(again, [run()]).failures, [])

    def test_summary_shows_each_figures_runs_spread_and_tolerance(self):
        runs = [run(first_task_us=us) for us in (400, 500, 600, 500, 450)]
        rows = [row for row in report.make_baseline(runs)
                if (row.guard.workload, row.guard.metric) == ("idle", "first_task")]
        self.assertAlmostEqual(report.spread_of(rows[0]), 0.2)
        line = report.summary_lines(rows)[2]
        self.assertIn("(e) first task after idle", line)
        self.assertIn("0.16 0.2 0.24 0.2 0.18", line)
        self.assertIn("20%", line)
        self.assertIn("30%", line)

    def test_few_runs_keep_an_earlier_tolerance(self):
        earlier = {("mpigate", "idle", "first_task"): 0.8}
        rows = {(row.guard.workload, row.guard.metric): row
                for row in report.make_baseline([run()], earlier)}
        self.assertEqual(rows[("idle", "first_task")].tolerance, 0.8)
        self.assertEqual(rows[("throughput", "futures")].tolerance, 0.25)


def floor_run(p50_us=210.0, grpc_p50_us=70.0, mpi4py_p50_us=400.0):
    """A run's (b) lines: mpigate's sequential p50, the bare gRPC round trip measured beside it,
    and mpi4py.futures' p50."""
    return raw_from([
        ("mpigate", "latency", "p50", p50_us, "us"),
        ("mpigate", "floor_grpc", "p50", grpc_p50_us, "us"),
        ("mpi4py", "latency", "p50", mpi4py_p50_us, "us"),
    ])


# mpigate's p50 3x the bare gRPC round trip's (lower is better), allowed 50% more: 4.5x.
FLOOR_BASELINE = [report.Baseline("mpigate", guard("latency", "vs_grpc"), 3.0, 0.5)]


class FloorGuardTest(unittest.TestCase):

    def test_a_run_like_the_baseline_passes(self):
        self.assertEqual(failures_of(floor_run(), FLOOR_BASELINE), [])

    def test_the_ratio_is_to_the_runs_own_grpc_floor_not_to_mpi4py(self):
        # A slower machine: mpigate and the floor both twice as slow, mpi4py.futures as before.
        self.assertEqual(failures_of(floor_run(p50_us=420, grpc_p50_us=140), FLOOR_BASELINE), [])
        # mpi4py.futures' figure does not enter: much faster, and the ratio still holds.
        self.assertEqual(failures_of(floor_run(mpi4py_p50_us=50), FLOOR_BASELINE), [])

    def test_a_p50_past_its_tolerance_over_the_floor_fails_and_is_named(self):
        # At most 4.5x the floor: 315 us passes, 316 us does not.
        self.assertEqual(failures_of(floor_run(p50_us=315), FLOOR_BASELINE), [])
        failures = failures_of(floor_run(p50_us=316), FLOOR_BASELINE)
        self.assertEqual(len(failures), 1)
        self.assertIn("(b) latency p50 / bare gRPC p50 [mpigate]", failures[0])
        self.assertIn("x bare gRPC", failures[0])

    def test_a_floor_that_was_not_measured_fails_with_its_reason(self):
        raw = raw_from([("mpigate", "latency", "p50", 200, "us"),
                        ("mpigate", "floor_grpc", "*", "error", "stream_api: exit status 1")])
        failures = failures_of(raw, FLOOR_BASELINE)
        self.assertEqual(len(failures), 1)
        self.assertIn("stream_api: exit status 1", failures[0])
        failures = failures_of(raw_from([("mpigate", "latency", "p50", 200, "us")]),
                               FLOOR_BASELINE)
        self.assertEqual(len(failures), 1)
        self.assertIn("no figure", failures[0])

    def test_made_from_runs_and_written_as_a_ratio_to_grpc(self):
        runs = [floor_run(p50_us=us) for us in (140, 210, 175, 140, 154)]
        rows = [row for row in report.make_baseline(runs)
                if (row.guard.workload, row.guard.metric) == ("latency", "vs_grpc")]
        self.assertEqual(len(rows), 1)  # mpigate only: mpigate-none did not run
        self.assertAlmostEqual(rows[0].value, 2.2)  # 154 / 70
        self.assertAlmostEqual(rows[0].tolerance, 0.55)  # 210 is 1.36x 154: 1.5 x 36%
        self.assertIn("bare gRPC", report.summary_lines(rows)[2])
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "baseline.csv")
            report.write_baseline(rows, path)
            with open(path, encoding="utf-8") as written:
                self.assertIn("mpigate,latency,vs_grpc,grpc,lower,", written.read())
            again = report.read_baseline(path)
        self.assertEqual(again[0].guard, rows[0].guard)
        self.assertEqual(report.check(again, [floor_run(p50_us=154)]).failures, [])

    def test_a_baseline_ratio_to_something_unknown_is_refused(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "baseline.csv")
            with open(path, "w", encoding="utf-8") as out:
                out.write(",".join(report.BASELINE_FIELDS) + "\n")
                out.write("mpigate,latency,vs_grpc,dask,lower,2.2,0.5,2.2\n")
            with self.assertRaisesRegex(ValueError, "ratio_to 'dask'"):
                report.read_baseline(path)


# The machine's own figure: the bare gRPC round trip was 70 us in the baseline's runs, allowed
# 25% more; mpigate's p50 over it as in FLOOR_BASELINE.
MACHINE_BASELINE = FLOOR_BASELINE + [
    report.Baseline("mpigate", guard("floor_grpc", "p50"), 70.0, 0.25)]


class MachineStateTest(unittest.TestCase):

    def test_a_slower_floor_alone_is_never_a_failure(self):
        result = report.check(MACHINE_BASELINE, [floor_run(p50_us=420, grpc_p50_us=140)])
        self.assertEqual(result.failures, [])
        self.assertEqual(result.hint, "")
        self.assertEqual(result.unsettled, [])
        self.assertTrue(any(line.startswith("SLOWER") and "bare gRPC" in line and "140 us" in line
                            for line in result.lines), result.lines)

    def test_a_failure_on_a_slower_machine_says_so(self):
        # 5x the floor (past 4.5x) while the floor itself is 2x the baseline's.
        result = report.check(MACHINE_BASELINE, [floor_run(p50_us=700, grpc_p50_us=140)])
        self.assertEqual(len(result.failures), 1)
        self.assertIn("the machine itself was slower", result.hint.lower())
        self.assertIn("140 us", result.hint)
        self.assertIn("bench/ab_trees.py", result.hint)

    def test_a_failure_on_a_machine_as_fast_as_the_baseline_has_no_hint(self):
        result = report.check(MACHINE_BASELINE, [floor_run(p50_us=350, grpc_p50_us=70)])
        self.assertEqual(len(result.failures), 1)
        self.assertEqual(result.hint, "")

    def test_a_missing_floor_is_not_a_failure_of_its_own(self):
        raw = raw_from([("mpigate", "latency", "p50", 210, "us"),
                        ("mpigate", "floor_grpc", "p50", 70, "us")])
        self.assertEqual(failures_of(raw, MACHINE_BASELINE + [
            report.Baseline("mpigate", guard("floor_mpi", "p50"), 10.0, 0.25)]), [])

    def test_made_from_runs_and_read_back(self):
        runs = [floor_run(grpc_p50_us=us) for us in (60, 70, 88, 62, 72)]
        rows = [row for row in report.make_baseline(runs) if row.guard.ratio_to == "machine"]
        self.assertEqual([(row.guard.workload, row.value) for row in rows], [("floor_grpc", 70)])
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "baseline.csv")
            report.write_baseline(rows, path)
            again = report.read_baseline(path)
        self.assertFalse(again[0].guard.judged)
        self.assertEqual(again[0].guard, rows[0].guard)


def python_run(p50_us=300.0, mpi4py_p50_us=400.0):
    """A run's (h) round trip p50, mpigate.futures' and mpi4py.futures'."""
    return raw_from([("mpigate-none", "python", "p50", p50_us, "us"),
                     ("mpi4py", "python", "p50", mpi4py_p50_us, "us")])


class MeasuredAgainTest(unittest.TestCase):
    """A run and its re-measurements (bench/compare.py --check measures a worse figure again, up
    to three measurements in all): the median decides, two of three."""

    def test_a_passing_run_is_settled(self):
        result = report.check(BASELINE, [run()])
        self.assertEqual((result.failures, result.unsettled), ([], []))

    def test_one_worse_run_is_unsettled_and_names_only_its_figure(self):
        result = report.check(BASELINE, [run(first_task_us=14_000)])
        self.assertEqual(len(result.failures), 1)
        self.assertEqual([(row.system, row.guard) for row in result.unsettled],
                         [("mpigate", guard("idle", "first_task"))])

    def test_worse_twice_fails_settled(self):
        result = report.check(BASELINE, [run(first_task_us=14_000), run(first_task_us=13_000)])
        self.assertEqual(len(result.failures), 1)
        self.assertIn("median of 5.6 5.2", result.failures[0])
        self.assertEqual(result.unsettled, [])

    def test_worse_then_fine_is_unsettled_and_the_third_decides(self):
        # One worse, one fine: a third measurement decides.
        worse, fine = run(first_task_us=14_000), run(first_task_us=500)
        self.assertEqual(len(report.check(BASELINE, [worse, fine]).unsettled), 1)
        passed = report.check(BASELINE, [worse, fine, run(first_task_us=600)])
        self.assertEqual((passed.failures, passed.unsettled), ([], []))
        failed = report.check(BASELINE, [worse, fine, run(first_task_us=9_000)])
        self.assertEqual(len(failed.failures), 1)
        self.assertEqual(failed.unsettled, [])

    def test_a_figure_fine_first_and_worse_when_measured_again_is_unsettled(self):
        # The re-measurement of another figure's pool also measured this one, worse: a third
        # measurement decides it too.
        result = report.check(BASELINE, [run(submit=90_000), run(submit=60_000)])
        self.assertEqual([row.guard for row in result.unsettled], [guard("throughput", "futures")])
        self.assertEqual(result.failures, [])  # the median, 75,000 tasks/s: 15x, at least 14.4x

    def test_a_re_measurement_without_the_figure_does_not_count(self):
        result = report.check(BASELINE, [run(first_task_us=14_000), python_run()])
        self.assertEqual(len(result.failures), 1)
        self.assertNotIn("median of", result.failures[0])
        self.assertEqual(len(result.unsettled), 1)

    def test_a_figure_a_re_measurement_failed_to_measure_fails_settled(self):
        broken = raw_from([("mpigate", "idle", "*", "error", "not done within its time limit")])
        result = report.check(BASELINE[:1], [run(first_task_us=14_000), broken])
        self.assertEqual(len(result.failures), 1)
        self.assertIn("not done within its time limit", result.failures[0])
        self.assertEqual(result.unsettled, [])

    def test_what_is_measured_again_for_each_figure(self):
        rows = {
            "first_task": BASELINE[0],  # a ratio to mpi4py.futures: its part too
            "vs_single": BASELINE[2],  # (d), a ratio to mpigate's own pool
            "python_p50": report.Baseline("mpigate-none", guard("python", "p50"), 0.8, 0.25),
        }
        self.assertEqual(report.parts_to_measure_again([rows["first_task"]]),
                         {("mpigate", report.CORE), ("mpi4py", report.CORE)})
        self.assertEqual(report.parts_to_measure_again([rows["vs_single"]]),
                         {("mpigate", report.CORE)})
        self.assertEqual(report.parts_to_measure_again([rows["python_p50"]]),
                         {("mpigate-none", report.PYTHON), ("mpi4py", report.PYTHON)})
        self.assertEqual(len(report.parts_to_measure_again(list(rows.values()))), 4)
        self.assertEqual(report.parts_to_measure_again([]), set())


if __name__ == "__main__":
    unittest.main()
