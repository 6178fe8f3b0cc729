"""mpigate.futures end to end on a shared service: MPIPoolExecutor against a real mpigate-server
(tests/python/server_process.py) whose workers run Python tasks (libmpigate_python), through
gRPC and MPI. Every behaviour mpi4py's ProcessPool* tests check, in tests of our own, and what
mpigate adds: per-executor setup on a shared pool, a broken executor that leaves the others
alone, gang tasks, numpy arrays, a crashing task.

The server hands each worker one task at a time (--max-tasks-per-worker=1), so that a task
submitted while every worker is busy stays queued and can be cancelled.
"""

import concurrent.futures
import faulthandler
import functools
import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from unittest import mock

import grpc
import numpy

import mpigate
from mpigate import futures
from server_process import ServerProcess

PATIENCE_S = 60
# Long enough that a test's next steps surely happen while it runs (as client_test's BUSY_MS).
BUSY_S = 1.5
HERE = os.path.dirname(os.path.abspath(__file__))

SERVER = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1"])


def setUpModule():
    SERVER.start()


def tearDownModule():
    SERVER.stop_checked()


def mul(x, y):
    return x * y


def raise_value_error(*args):
    raise ValueError(*args)


def read_global(name):
    return globals()[name]


def comm_sum(base):
    comm = futures.get_comm_workers()
    return comm.Get_size(), comm.allreduce(base + comm.Get_rank())


class Unpicklable:
    def __reduce__(self):
        raise ZeroDivisionError("no pickling")


class FailsToUnpickle:
    """Pickles on the client; unpickling it (on the worker) raises ZeroDivisionError."""

    def __reduce__(self):
        return (divmod, (1, 0))


class RecordingIterable:
    """Counts how many items map() took."""

    def __init__(self, items):
        self.taken = 0
        self._items = items

    def __iter__(self):
        for item in self._items:
            self.taken += 1
            yield item


class FuturesTest(unittest.TestCase):

    def executor(self, *args, **kwargs):
        """An executor of the shared service, shut down (queued calls cancelled) after the test."""
        executor = futures.MPIPoolExecutor(*args, endpoint=SERVER.target,
                                           client_name=self.id(), **kwargs)
        self.addCleanup(executor.shutdown, wait=True, cancel_futures=True)
        return executor

    def occupy_workers(self, executor):
        """Keeps every worker busy for BUSY_S; returns their futures once all run."""
        busy = [executor.submit(time.sleep, BUSY_S) for _ in range(2)]
        for future in busy:
            self.assertTrue(future.wait_started(PATIENCE_S))
        return busy

    # --- submit and results ---

    def test_submit_runs_calls_with_args_and_kwargs(self):
        executor = self.executor()
        self.assertEqual(executor.submit(pow, 2, 8).result(PATIENCE_S), 256)
        self.assertEqual(executor.submit(mul, 2, y=8).result(PATIENCE_S), 16)
        self.assertEqual(executor.submit(mul, x=2, y=8).result(PATIENCE_S), 16)
        offset = 5
        self.assertEqual(executor.submit(lambda v: v + offset, 1).result(PATIENCE_S), 6)
        future = executor.submit(os.getpid)
        self.assertIsInstance(future, concurrent.futures.Future)
        self.assertNotEqual(future.result(PATIENCE_S), os.getpid())
        self.assertIsNone(executor.submit(time.sleep, 0).result(PATIENCE_S))

    def test_remote_exception_has_its_type_args_and_traceback(self):
        executor = self.executor()
        future = executor.submit(raise_value_error, "bad", 7)
        error = future.exception(PATIENCE_S)
        self.assertIs(type(error), ValueError)
        self.assertEqual(error.args, ("bad", 7))
        self.assertIn("raise_value_error", str(error.__cause__))
        self.assertIn("Traceback", str(error.__cause__))
        with self.assertRaises(ZeroDivisionError):
            executor.submit(divmod, 1, 0).result(PATIENCE_S)

    def test_an_unpicklable_argument_fails_its_future_only(self):
        executor = self.executor()
        future = executor.submit(id, Unpicklable())
        self.assertIsInstance(future.exception(PATIENCE_S), ZeroDivisionError)
        self.assertIsNone(future.exception().__cause__)
        future = executor.submit(id, FailsToUnpickle())
        error = future.exception(PATIENCE_S)
        self.assertIsInstance(error, ZeroDivisionError)
        self.assertIsNotNone(error.__cause__)  # the worker's traceback
        # A result the worker cannot pickle.
        self.assertIsInstance(executor.submit(threading.Lock).exception(PATIENCE_S), TypeError)
        self.assertEqual(executor.submit(abs, -42).result(PATIENCE_S), 42)

    def test_a_crashing_task_fails_with_how_its_runner_died(self):
        executor = self.executor()
        error = executor.submit(os._exit, 3).exception(PATIENCE_S)
        self.assertIsInstance(error, mpigate.TaskError)
        self.assertEqual(error.code, grpc.StatusCode.ABORTED)
        self.assertIn("status 3", error.message)
        self.assertEqual(executor.submit(abs, -1).result(PATIENCE_S), 1)

    def test_numpy_arrays_round_trip(self):
        executor = self.executor()
        array = numpy.arange(2 << 20, dtype=numpy.float64)  # 16 MiB: out-of-band buffers
        self.assertTrue(numpy.array_equal(executor.submit(numpy.negative, array).result(
            PATIENCE_S), -array))
        small = numpy.arange(10)
        self.assertEqual(executor.submit(numpy.sum, small).result(PATIENCE_S), 45)

    def test_many_threads_submit_through_one_executor(self):
        executor = self.executor()
        results = {}

        def submit_some(base):
            fs = [executor.submit(abs, -(base + i)) for i in range(100)]
            results[base] = [f.result(PATIENCE_S) for f in fs]

        threads = [threading.Thread(target=submit_some, args=(1000 * t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for base, values in results.items():
            self.assertEqual(values, [base + i for i in range(100)])
        self.assertEqual(len(results), 4)

    # --- wait, as_completed, cancel ---

    def test_wait_and_as_completed(self):
        executor = self.executor()
        quick = executor.submit(mul, 21, 2)
        failing = executor.submit(divmod, 1, 0)
        slow = executor.submit(time.sleep, BUSY_S)
        done, not_done = futures.wait([quick, slow], return_when=futures.FIRST_COMPLETED,
                                      timeout=PATIENCE_S)
        self.assertEqual(done, {quick})
        self.assertEqual(not_done, {slow})
        done, not_done = futures.wait([failing, slow], return_when=futures.FIRST_EXCEPTION,
                                      timeout=PATIENCE_S)
        self.assertEqual(done, {failing})
        self.assertEqual(set(futures.as_completed([quick, failing, slow, slow], PATIENCE_S)),
                         {quick, failing, slow})
        done, not_done = futures.wait([quick, failing, slow], return_when=futures.ALL_COMPLETED)
        self.assertEqual(len(done), 3)

    def test_cancel_a_queued_call(self):
        executor = self.executor()
        busy = self.occupy_workers(executor)
        queued = executor.submit(time.sleep, 0)
        self.assertTrue(queued.cancel())
        self.assertTrue(queued.cancelled())
        with self.assertRaises(futures.CancelledError):
            queued.result()
        self.assertFalse(busy[0].cancel())  # running
        for future in busy:
            self.assertIsNone(future.result(PATIENCE_S))

    # --- map ---

    def test_map_and_starmap_in_order(self):
        executor = self.executor()
        expected = [pow(a, a) for a in range(40)]
        for chunksize in (1, 6, 40, 50):
            self.assertEqual(list(executor.map(pow, range(40), range(40), chunksize=chunksize)),
                             expected)
            self.assertEqual(list(executor.starmap(pow, iter([(a, a) for a in range(40)]),
                                                   chunksize=chunksize)), expected)
        self.assertEqual(list(executor.map(abs, [])), [])
        for chunksize in (1, 7):
            self.assertEqual(set(executor.map(pow, range(40), range(40), chunksize=chunksize,
                                              unordered=True)), set(expected))

    def test_map_arguments_are_checked(self):
        executor = self.executor()
        with self.assertRaises(ValueError):
            executor.map(pow, range(4), range(4), chunksize=0)
        with self.assertRaises(TypeError):
            executor.map(pow, range(4), range(4), buffersize="1")
        with self.assertRaises(ValueError):
            executor.map(pow, range(4), range(4), buffersize=0)
        with self.assertRaises(ValueError):
            executor.map(pow, range(4), range(4), buffersize=1, unordered=True)

    def test_map_raises_at_the_failing_position(self):
        executor = self.executor()
        for chunksize in (1, 3):
            results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5], chunksize=chunksize)
            self.assertEqual(next(results), (0, 1))
            self.assertEqual(next(results), (0, 1))
            with self.assertRaises(ZeroDivisionError):
                next(results)
        unordered = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5], unordered=True)
        with self.assertRaises(ZeroDivisionError):
            list(unordered)

    def test_map_timeout_counts_from_the_call(self):
        executor = self.executor()
        # Unordered first: the long call of each map goes on running after its timeout.
        results = []
        with self.assertRaises(futures.TimeoutError):
            for value in executor.map(time.sleep, [BUSY_S, 0], timeout=BUSY_S / 3,
                                      unordered=True):
                results.append(value)
        self.assertEqual(results, [None])
        results = []
        with self.assertRaises(futures.TimeoutError):
            for value in executor.map(time.sleep, [0, 0, BUSY_S], timeout=BUSY_S / 3):
                results.append(value)
        self.assertEqual(results, [None, None])
        self.assertEqual(list(executor.map(time.sleep, [0, 0, 0], timeout=PATIENCE_S)),
                         [None] * 3)

    def test_map_with_buffersize_takes_items_as_results_are_read(self):
        executor = self.executor()
        for chunksize in (1, 3):
            items = RecordingIterable(range(20))
            results = executor.map(abs, items, chunksize=chunksize, buffersize=2)
            self.assertEqual(items.taken, 2 * chunksize)
            first = [next(results) for _ in range(chunksize)]
            self.assertEqual(first, list(range(chunksize)))
            self.assertEqual(items.taken, 3 * chunksize)
            self.assertEqual(list(results), list(range(chunksize, 20)))
        for buffersize in (1, 2, 9, 10, 11):
            for chunksize in (1, 2, 9, 10, 11):
                self.assertEqual(list(executor.map(pow, range(10), range(10), chunksize=chunksize,
                                                   buffersize=buffersize)),
                                 [pow(a, a) for a in range(10)])

    def test_closing_a_map_cancels_the_calls_left(self):
        executor = self.executor(path=[HERE])
        import futures_helpers  # pylint: disable=import-outside-toplevel
        with tempfile.TemporaryDirectory() as directory:
            results = executor.map(futures_helpers.append_and_sleep, [directory] * 40,
                                   range(40), [0.2] * 40)
            self.assertEqual(next(results), 0)
            results.close()
            executor.shutdown(wait=True)
            self.assertLess(len(os.listdir(directory)), 40)

    # --- shutdown and bootup ---

    def test_shutdown_waits_and_refuses_later_calls(self):
        executor = self.executor()
        fs = [executor.submit(time.sleep, 0.01) for _ in range(50)]
        executor.shutdown()
        self.assertTrue(all(f.done() and f.result() is None for f in fs))
        with self.assertRaises(RuntimeError):
            executor.submit(pow, 2, 5)
        with self.assertRaises(RuntimeError):
            executor.bootup()
        self.assertEqual(executor.num_workers, 0)
        executor.shutdown()  # again

    def test_shutdown_cancel_futures_cancels_queued_calls(self):
        executor = self.executor()
        busy = self.occupy_workers(executor)
        queued = [executor.submit(time.sleep, 0) for _ in range(5)]
        executor.shutdown(wait=False)
        self.assertFalse(any(f.cancelled() for f in queued))
        executor.shutdown(wait=True, cancel_futures=True)
        self.assertTrue(all(f.cancelled() for f in queued))
        self.assertTrue(all(f.result() is None for f in busy))

    def test_context_manager_and_bootup(self):
        with self.executor(1) as executor:
            self.assertIs(executor.bootup(), executor)
            self.assertIs(executor.bootup(wait=False), executor)
            self.assertEqual(list(executor.map(abs, range(-5, 5))),
                             [5, 4, 3, 2, 1, 0, 1, 2, 3, 4])
        with self.assertRaises(RuntimeError):
            executor.submit(abs, 1)

    def test_num_workers_is_the_smaller_of_max_workers_and_the_pool(self):
        self.assertEqual(self.executor().num_workers, 2)
        self.assertEqual(self.executor(1).num_workers, 1)
        self.assertEqual(self.executor(5).num_workers, 2)
        with mock.patch.dict(os.environ, {"MPI4PY_FUTURES_MAX_WORKERS": "1"}):
            self.assertEqual(self.executor().num_workers, 1)

    def test_max_workers_caps_the_calls_running_at_once_on_a_shared_pool(self):
        capped = self.executor(1)
        spans = [f.result(PATIENCE_S) for f in [capped.submit(_running_span, BUSY_S / 3)
                                                for _ in range(3)]]
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            self.assertLessEqual(end, start)  # one after the other, though 2 workers are free
        uncapped = self.executor(2)
        spans = [f.result(PATIENCE_S) for f in [uncapped.submit(_running_span, BUSY_S)
                                                for _ in range(2)]]
        self.assertLess(max(start for start, _ in spans), min(end for _, end in spans))

    def test_bad_arguments_raise(self):
        for number in (0, -1):
            with self.assertRaises(ValueError):
                futures.MPIPoolExecutor(max_workers=number)
        with self.assertRaises(TypeError):
            futures.MPIPoolExecutor(initializer=123)
        with self.assertRaises(TypeError):
            futures.MPIPoolExecutor(no_such_option=1)
        # mpi4py's settings of the processes it spawns are accepted.
        executor = self.executor(python_exe=sys.executable, python_args=["-B"],
                                 mpi_info={"soft": "0:1"}, main=False, use_pkl5=None,
                                 backoff=0.001, globals=None, path=[], env={}, wdir=os.getcwd())
        self.assertEqual(executor.submit(abs, -3).result(PATIENCE_S), 3)

    def test_a_dropped_executor_ends_its_session(self):
        executor = futures.MPIPoolExecutor(endpoint=SERVER.target, client_name=self.id())
        future = executor.submit(time.sleep, 0.1)
        session = executor._tracker.session
        del executor
        gc.collect()
        with self.assertRaises(RuntimeError):  # shut down, by the executor's finalizer
            session.submit_many([])
        self.assertIsNone(future.result(PATIENCE_S))  # its calls still end

    # --- per-executor setup on a shared pool ---

    def test_initializer_runs_on_each_worker_before_its_tasks(self):
        with tempfile.TemporaryDirectory() as directory:
            executor = self.executor(initializer=functools.partial(_record_init, directory))
            pids = {f.result(PATIENCE_S) for f in [executor.submit(os.getpid)
                                                   for _ in range(20)]}
            self.assertLessEqual(pids, {int(name) for name in os.listdir(directory)})

    def test_a_failing_initializer_breaks_its_executor_only(self):
        other = self.executor()
        executor = self.executor(initializer=raise_value_error, initargs=("no database",))
        first = executor.submit(time.sleep, 0)
        second = executor.submit(time.sleep, 0)
        error = first.exception(PATIENCE_S)
        self.assertIsInstance(error, futures.BrokenExecutor)
        self.assertIsInstance(error.__cause__, ValueError)
        self.assertIsInstance(second.exception(PATIENCE_S), futures.BrokenExecutor)
        with self.assertRaises(futures.BrokenExecutor):
            executor.submit(time.sleep, 0)
        with self.assertRaises(futures.BrokenExecutor):
            executor.map(abs, [1])
        self.assertEqual(executor.num_workers, 0)
        mapped = self.executor(initializer=raise_value_error).map(abs, range(10), chunksize=3)
        with self.assertRaises(futures.BrokenExecutor):
            list(mapped)
        self.assertEqual(other.submit(abs, -2).result(PATIENCE_S), 2)

    def test_globals_env_path_and_wdir_are_per_executor(self):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "futures_test_module.py"), "w",
                      encoding="utf-8") as file:
                file.write("VALUE = 'imported'\n")
            one = self.executor(globals={"K": 1}, env={"FUTURES_TEST_VAR": "one"},
                                path=[directory], wdir=directory)
            two = self.executor(globals={"K": 2})
            bare = self.executor()
            for _ in range(4):  # every worker, in turns
                self.assertEqual(one.submit(read_global, "K").result(PATIENCE_S), 1)
                self.assertEqual(two.submit(read_global, "K").result(PATIENCE_S), 2)
                self.assertIsInstance(bare.submit(read_global, "K").exception(PATIENCE_S),
                                      KeyError)
                self.assertEqual(one.submit(os.getenv, "FUTURES_TEST_VAR").result(
                    PATIENCE_S), "one")
                self.assertIsNone(two.submit(os.getenv, "FUTURES_TEST_VAR").result(
                    PATIENCE_S))
                self.assertEqual(one.submit(_import_value, "futures_test_module").result(
                    PATIENCE_S), "imported")
                # (The module stays imported in the worker, as in any Python process: its
                # path entry does not.)
                self.assertTrue(one.submit(_on_path, directory).result(PATIENCE_S))
                self.assertFalse(two.submit(_on_path, directory).result(PATIENCE_S))
                self.assertEqual(one.submit(os.getcwd).result(PATIENCE_S),
                                 os.path.realpath(directory))
                self.assertNotEqual(bare.submit(os.getcwd).result(PATIENCE_S),
                                    os.path.realpath(directory))

    # --- gangs and communicators ---

    def test_a_gang_call_gets_a_communicator_of_its_ranks(self):
        executor = self.executor()
        size, total = executor.submit(comm_sum, 10, gang_size=2).result(PATIENCE_S)
        self.assertEqual((size, total), (2, 10 + 11))
        with self.assertRaises(ValueError):
            executor.submit(comm_sum, 1, gang_size=0)
        with self.assertRaises(RuntimeError):
            futures.get_comm_workers()

    def test_mpi_comm_executor_gives_the_root_an_executor(self):
        # In a process of its own: MPI_Init (mpi4py's import) in this one would start an MPI
        # daemon as its child, which lives as long as this process and so outlives the server.
        script = textwrap.dedent(f"""
            from mpi4py import MPI
            from mpigate import futures
            with futures.MPICommExecutor(MPI.COMM_SELF, endpoint={SERVER.target!r}) as executor:
                assert isinstance(executor, futures.MPIPoolExecutor)
                assert executor.submit(abs, -4).result() == 4
            try:
                executor.submit(abs, 1)
            except RuntimeError:
                pass
            else:
                raise AssertionError("submit after the with block")
            for bad in ({{"comm": MPI.COMM_SELF, "root": 1}}, {{"root": -1}}):
                try:
                    futures.MPICommExecutor(**bad)
                except ValueError:
                    pass
                else:
                    raise AssertionError(f"MPICommExecutor(**{{bad}})")
            comm_executor = futures.MPICommExecutor(MPI.COMM_SELF, endpoint={SERVER.target!r})
            with comm_executor:
                try:
                    with comm_executor:
                        pass
                except RuntimeError:
                    print("ok")
            """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=PATIENCE_S, check=False)
        self.assertEqual((done.returncode, done.stdout), (0, "ok\n"), done.stderr)


def _record_init(directory):
    with open(os.path.join(directory, str(os.getpid())), "w", encoding="utf-8"):
        pass


def _import_value(name):
    return __import__(name).VALUE


def _running_span(seconds):
    """(start, end) of a sleep, on the host's monotonic clock (one for every process)."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def _on_path(directory):
    return directory in sys.path


if __name__ == "__main__":
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
