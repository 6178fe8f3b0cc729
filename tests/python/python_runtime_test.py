"""The workers' Python task runtime (libmpigate_python.so) end to end: python.call and
python.gang tasks of mpigate._python_task's format, submitted through mpigate.Executor to a real
mpigate-server (which loads the runtime by default) and decoded on this side.

One server for all tests (2 workers, one task at a time each). Tests that need to know which
worker ran what have the task return its process id.
"""

import concurrent.futures
import ctypes
import os
import pickle
import signal
import sys
import tempfile
import threading
import unittest

import grpc
import numpy

import mpigate
from mpigate import _python_task as pt
import python_runtime_helpers as helpers
from server_process import ServerProcess

# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60
HERE = os.path.dirname(os.path.abspath(helpers.__file__))

SERVER = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1"])


def bump_counter(name):
    """Counts calls in the worker's interpreter (builtins outlives every task): (pid, count)."""
    import builtins
    counts = builtins.__dict__.setdefault("_mpigate_test_counts", {})
    counts[name] = counts.get(name, 0) + 1
    return os.getpid(), counts[name]


class PythonRuntimeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        SERVER.start()
        cls.executor = mpigate.Executor(SERVER.target)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        SERVER.stop_checked()

    def setUp(self):
        self.setup = pt.executor_setup()

    def submit(self, setup, fn, *args, **kwargs):
        return self.executor.submit("python.call", b"".join(pt.encode_call(setup, fn, args,
                                                                           kwargs)))

    def call(self, setup, fn, *args, **kwargs):
        return pt.decode_outcome(self.submit(setup, fn, *args, **kwargs).result(PATIENCE_S))

    def test_pool_lists_the_python_functions(self):
        from mpigate.v1 import gateway_pb2, gateway_pb2_grpc
        with grpc.insecure_channel(SERVER.target) as channel:
            status = gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
                gateway_pb2.GetPoolStatusRequest(), timeout=PATIENCE_S)
        names = {function.name for function in status.functions}
        self.assertIn("python.call", names)
        self.assertIn("python.gang", names)

    def test_lambda_closure_and_main_function_travel_by_value(self):
        offset = 5
        self.assertEqual(self.call(self.setup, lambda x: x * 2, 21), 42)
        self.assertEqual(self.call(self.setup, lambda: offset + 1), 6)
        # bump_counter is __main__'s: it ran in a worker's interpreter, not here.
        self.assertNotEqual(self.call(self.setup, bump_counter, "by-value")[0], os.getpid())

    def test_stdlib_function_by_reference_and_kwargs(self):
        self.assertEqual(self.call(self.setup, int, "ff", base=16), 255)
        self.assertEqual(self.call(self.setup, sorted, [3, 1, 2], reverse=True), [3, 2, 1])
        self.assertNotEqual(self.call(self.setup, os.getpid), os.getpid())

    def test_exception_arrives_with_type_args_and_remote_traceback(self):
        def fail(code):
            raise helpers.InitFailed("remote failure", code)
        with self.assertRaises(helpers.InitFailed) as caught:
            self.call(self.setup, fail, 7)
        self.assertEqual(caught.exception.args, ("remote failure", 7))
        self.assertIsInstance(caught.exception.__cause__, pt.RemoteTraceback)
        self.assertIn("in fail", str(caught.exception.__cause__))
        with self.assertRaises(KeyError):
            self.call(self.setup, {}.__getitem__, "missing")

    def test_unpicklable_result_fails_with_the_pickling_error(self):
        with self.assertRaises((pickle.PicklingError, TypeError)) as caught:
            self.call(self.setup, threading.Lock)
        self.assertIn("lock", str(caught.exception))
        # The worker goes on.
        self.assertEqual(self.call(self.setup, abs, -3), 3)

    def test_state_persists_across_tasks_in_a_worker(self):
        seen = {}
        for _ in range(8):
            pid, count = self.call(self.setup, bump_counter, "persist")
            seen.setdefault(pid, []).append(count)
        for counts in seen.values():
            self.assertEqual(counts, list(range(counts[0], counts[0] + len(counts))))
        self.assertGreater(max(len(counts) for counts in seen.values()), 1)

    def test_initializer_runs_once_per_worker_and_a_failing_one_breaks_only_its_executor(self):
        good = pt.executor_setup(initializer=helpers.count_init, initargs=("good",), path=[HERE])
        broken = pt.executor_setup(initializer=helpers.raise_init, initargs=("why",))
        good_futures = []
        broken_futures = []
        for _ in range(10):
            good_futures.append(self.submit(good, helpers.init_count, "good"))
            broken_futures.append(self.submit(broken, abs, 1))
            good_futures.append(self.submit(self.setup, abs, -1))
        for future in good_futures[0::2]:
            self.assertEqual(pt.decode_outcome(future.result(PATIENCE_S)), 1)
        for future in good_futures[1::2]:
            self.assertEqual(pt.decode_outcome(future.result(PATIENCE_S)), 1)
        for future in broken_futures:
            with self.assertRaises(pt.ExecutorSetupError) as caught:
                pt.decode_outcome(future.result(PATIENCE_S))
            self.assertIsInstance(caught.exception, concurrent.futures.BrokenExecutor)
            self.assertEqual(caught.exception.__cause__.args, ("init failed", "why"))

    def test_globals_path_and_wdir_are_isolated_between_executors(self):
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            first = pt.executor_setup(globals={"NAME": "first"}, path=[one], wdir=one)
            second = pt.executor_setup(globals={"NAME": "second"}, path=[two], wdir=two)

            def probe():
                return globals().get("NAME"), sys.path[0], os.getcwd()

            for _ in range(3):
                self.assertEqual(self.call(first, probe), ("first", one, os.path.realpath(one)))
                self.assertEqual(self.call(second, probe),
                                 ("second", two, os.path.realpath(two)))
                name, path0, cwd = self.call(self.setup, probe)
                self.assertIsNone(name)
                self.assertNotIn(path0, (one, two))
                self.assertNotIn(cwd, (os.path.realpath(one), os.path.realpath(two)))

    def test_path_makes_a_users_module_importable(self):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "mpigate_user_module.py"), "w") as module:
                module.write("def triple(x):\n    return 3 * x\n")
            setup = pt.executor_setup(path=[directory])
            self.assertEqual(self.call(setup, lambda: __import__("mpigate_user_module").triple(4)),
                             12)
            with self.assertRaises(ModuleNotFoundError):
                self.call(self.setup, lambda: __import__("mpigate_user_module"))

    def test_numpy_array_in_and_out(self):
        array = numpy.random.default_rng(1).random(1 << 20)
        parts = pt.encode_call(self.setup, numpy.multiply, (array, 2.0), {})
        self.assertGreater(len(parts), 1)  # the array travels out of band
        result = pt.decode_outcome(
            self.executor.submit("python.call", b"".join(parts)).result(PATIENCE_S))
        numpy.testing.assert_array_equal(result, array * 2.0)

    def test_a_task_that_segfaults_its_runner_fails_aborted_and_the_next_runs(self):
        def segfault():
            # Dies by the signal even in a sanitizer build, whose handler would report the fault
            # (as tests/testdata/sample_tasks.cc's sample.crash does).
            signal.signal(signal.SIGSEGV, signal.SIG_DFL)
            ctypes.string_at(0)
        with self.assertRaises(mpigate.TaskError) as caught:
            self.call(self.setup, segfault)
        self.assertEqual(caught.exception.code, grpc.StatusCode.ABORTED)
        self.assertEqual(self.call(self.setup, abs, -9), 9)

    def test_gang_allreduce_over_the_gangs_communicator(self):
        def gang_sum():
            import _mpigate_worker
            comm = _mpigate_worker.comm_workers()
            return comm.allreduce(comm.Get_rank() + 1), comm.Get_size(), comm.Get_rank()
        payload = b"".join(pt.encode_call(self.setup, gang_sum, (), {}))
        result = self.executor.submit("python.gang", payload, gang_size=2).result(PATIENCE_S)
        self.assertEqual(pt.decode_outcome(result), (3, 2, 0))

    def test_comm_workers_outside_a_gang_raises(self):
        with self.assertRaises(RuntimeError):
            self.call(self.setup, lambda: __import__("_mpigate_worker").comm_workers())

    def test_map_chunk_stops_at_the_item_that_raises(self):
        parts = pt.encode_chunk(self.setup, lambda x: 12 // x, [(1,), (3,), (0,), (4,)])
        result = self.executor.submit("python.call", b"".join(parts)).result(PATIENCE_S)
        values, error = pt.decode_chunk_outcome(result)
        self.assertEqual(values, [12, 4])
        self.assertIsInstance(error, ZeroDivisionError)
        self.assertIsInstance(error.__cause__, pt.RemoteTraceback)

    def test_payload_that_is_not_a_python_task_is_invalid_argument(self):
        for payload in (b"", b"not a python task", b"MPGT\x01\x01" + bytes(40)):
            with self.assertRaises(mpigate.TaskError) as caught:
                self.executor.submit("python.call", payload).result(PATIENCE_S)
            self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_environment_of_the_executor_is_os_environ(self):
        # (Not os.environ.get itself: a bound method pickles its object, this process's
        # os.environ, by value.)
        def read():
            return os.environ.get("MPIGATE_PY_ENV"), os.getenv("MPIGATE_PY_ENV")
        with mpigate.Executor(SERVER.target, env={"MPIGATE_PY_ENV": "one"}) as executor:
            payload = b"".join(pt.encode_call(self.setup, read, (), {}))
            for _ in range(3):
                self.assertEqual(pt.decode_outcome(
                    executor.submit("python.call", payload).result(PATIENCE_S)), ("one", "one"))
                self.assertEqual(self.call(self.setup, read), (None, None))

    def test_interrupt_raises_keyboard_interrupt_in_the_running_task(self):
        with tempfile.TemporaryDirectory() as directory:
            for catch in (False, True):
                fifo = os.path.join(directory, f"started-{catch}")
                os.mkfifo(fifo)

                def sleeper(fifo, catch):
                    import time
                    with open(fifo, "w") as started:
                        started.write("x")
                    try:
                        time.sleep(3600)
                    except KeyboardInterrupt:
                        if catch:
                            return "caught"
                        raise
                    return "slept"

                future = self.submit(self.setup, sleeper, fifo, catch)
                with open(fifo) as started:  # returns once the task runs
                    self.assertEqual(started.read(), "x")
                self.assertTrue(future.interrupt())
                if catch:
                    self.assertEqual(pt.decode_outcome(future.result(PATIENCE_S)), "caught")
                else:
                    with self.assertRaises(mpigate.TaskError) as caught:
                        future.result(PATIENCE_S)
                    self.assertEqual(caught.exception.code, grpc.StatusCode.CANCELLED)
        self.assertEqual(self.call(self.setup, abs, -2), 2)

    def test_report_progress_reaches_the_client(self):
        with tempfile.TemporaryDirectory() as directory:
            fifo = os.path.join(directory, "go")
            os.mkfifo(fifo)

            def reporter(fifo):
                import _mpigate_worker
                _mpigate_worker.report_progress(0.5, "half way")
                with open(fifo) as go:  # waits for the client to have seen the report
                    return go.read()

            reported = threading.Event()
            future = self.submit(self.setup, reporter, fifo)
            try:
                future.add_progress_callback(lambda future, progress: reported.set())
                # The callback hears only reports after it was added: one may have come already.
                if future.progress() is not None:
                    reported.set()
                self.assertTrue(reported.wait(PATIENCE_S))
                self.assertEqual(tuple(future.progress()), (0.5, "half way"))
                with open(fifo, "w") as go:
                    go.write("done")
                self.assertEqual(pt.decode_outcome(future.result(PATIENCE_S)), "done")
            finally:
                # A failed check leaves the task waiting on the fifo: free the worker for the
                # tests after this one and for the executor's shutdown.
                if not future.done():
                    future.kill()


def busy_until_interrupted(fifo):
    """Says it started through `fifo`, then runs Python code until KeyboardInterrupt arrives."""
    with open(fifo, "w") as started:
        started.write("x")
    try:
        while True:
            pass
    except KeyboardInterrupt:
        return "caught"


class InProcessRuntimeTest(unittest.TestCase):
    """Python tasks on the worker's own threads: --isolation=none (a task thread) and gangs."""

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1",
                                                     "--isolation=none"])
        cls.server.start()
        cls.executor = mpigate.Executor(cls.server.target)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.server.stop_checked()

    def test_calls_and_gangs_share_the_workers_interpreter(self):
        setup = pt.executor_setup()
        payload = b"".join(pt.encode_call(setup, bump_counter, ("in-process",), {}))
        pids = set()
        for _ in range(4):
            pid, _ = pt.decode_outcome(
                self.executor.submit("python.call", payload).result(PATIENCE_S))
            pids.add(pid)

        def gang_pid():
            import _mpigate_worker
            comm = _mpigate_worker.comm_workers()
            return comm.gather(os.getpid())
        payload = b"".join(pt.encode_call(setup, gang_pid, (), {}))
        gang_pids = pt.decode_outcome(
            self.executor.submit("python.gang", payload, gang_size=2).result(PATIENCE_S))
        self.assertEqual(len(set(gang_pids)), 2)
        # Without isolation, the calls ran in the workers themselves, where the gang ran.
        self.assertTrue(pids <= set(gang_pids))

    def test_interrupt_reaches_python_on_a_worker_thread(self):
        setup = pt.executor_setup()
        with tempfile.TemporaryDirectory() as directory:
            fifo = os.path.join(directory, "started")
            os.mkfifo(fifo)
            payload = b"".join(pt.encode_call(setup, busy_until_interrupted, (fifo,), {}))
            future = self.executor.submit("python.call", payload)
            with open(fifo) as started:  # returns once the task runs
                self.assertEqual(started.read(), "x")
            self.assertTrue(future.interrupt())
        self.assertEqual(pt.decode_outcome(future.result(PATIENCE_S)), "caught")


if __name__ == "__main__":
    unittest.main()
