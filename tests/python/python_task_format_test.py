"""Unit tests of mpigate._python_task, the wire format of Python tasks, without a server: the
client's encoders against the worker's run_payload in this process, and the framing's checks."""

import concurrent.futures
import functools
import math
import operator
import os
import pickle
import struct
import tempfile
import unittest

import numpy

from mpigate import _python_task as pt
import python_runtime_helpers as helpers


def run(parts):
    """What a worker answers to a payload given in parts (joined, as the session sends it)."""
    return b"".join(pt.run_payload(b"".join(parts)))


def call(setup, fn, *args, **kwargs):
    return pt.decode_outcome(run(pt.encode_call(setup, fn, args, kwargs)))


class Custom(Exception):
    pass


class FormatTest(unittest.TestCase):

    def setUp(self):
        self.setup = pt.executor_setup()

    def test_default_setup_has_an_empty_blob_and_a_random_key(self):
        other = pt.executor_setup()
        self.assertEqual(self.setup.blob, b"")
        self.assertEqual(len(self.setup.key), 16)
        self.assertNotEqual(self.setup.key, other.key)

    def test_call_by_reference_and_by_value(self):
        self.assertEqual(call(self.setup, math.factorial, 5), 120)
        offset = 7
        self.assertEqual(call(self.setup, lambda x, y=0: x + y + offset, 1, y=2), 10)

    def test_by_reference_pickle_names_the_function(self):
        parts = pt.encode_call(self.setup, operator.add, (1, 2), {})
        self.assertIn(b"operator", parts[0])

    def test_a_module_outside_the_library_and_the_path_travels_by_value(self):
        parts = pt.encode_call(self.setup, helpers.pid, (), {})
        self.assertIn(b"_make_function", parts[0])
        by_path = pt.executor_setup(path=[os.path.dirname(helpers.__file__)])
        parts = pt.encode_call(by_path, helpers.pid, (), {})
        self.assertNotIn(b"_make_function", parts[0])
        self.assertEqual(call(by_path, helpers.pid), os.getpid())

    def test_remote_exception_keeps_type_args_and_traceback(self):
        def fail(x):
            raise Custom("bad", x)
        with self.assertRaises(Custom) as caught:
            call(self.setup, fail, 3)
        self.assertEqual(caught.exception.args, ("bad", 3))
        self.assertIsInstance(caught.exception.__cause__, pt.RemoteTraceback)
        self.assertIn("in fail", str(caught.exception.__cause__))

    def test_unpicklable_result_is_the_pickling_error(self):
        with self.assertRaises((pickle.PicklingError, TypeError)):
            call(self.setup, lambda: __import__("threading").Lock())

    def test_unpicklable_argument_raises_at_encode(self):
        import threading
        with self.assertRaises(TypeError):
            pt.encode_call(self.setup, print, (threading.Lock(),), {})

    def test_large_arrays_go_out_of_band_and_decode_without_copy(self):
        array = numpy.arange(1 << 16, dtype=numpy.float64)
        parts = pt.encode_call(self.setup, numpy.negative, (array,), {})
        self.assertEqual(len(parts), 2)
        self.assertEqual(parts[0].__len__() % 64, 0)
        self.assertEqual(memoryview(parts[1]).nbytes, array.nbytes)
        outcome = run(parts)
        view = memoryview(outcome)
        result = pt.decode_outcome(view)
        numpy.testing.assert_array_equal(result, -array)
        # Zero copy: the array's memory is the outcome's.
        self.assertFalse(result.flags.owndata)
        small = numpy.arange(10)
        self.assertEqual(len(pt.encode_call(self.setup, numpy.negative, (small,), {})), 1)

    def test_two_buffers_are_aligned(self):
        a = numpy.ones(70000, dtype=numpy.uint8)
        b = numpy.full(70001, 2, dtype=numpy.uint8)
        result = call(self.setup, lambda x, y: (y, x), a, b)
        numpy.testing.assert_array_equal(result[0], b)
        numpy.testing.assert_array_equal(result[1], a)

    def test_chunk_stops_at_the_first_item_that_raises(self):
        parts = pt.encode_chunk(self.setup, lambda x: 10 // x, [(1,), (2,), (0,), (5,)])
        values, error = pt.decode_chunk_outcome(run(parts))
        self.assertEqual(values, [10, 5])
        self.assertIsInstance(error, ZeroDivisionError)
        self.assertIsInstance(error.__cause__, pt.RemoteTraceback)
        parts = pt.encode_chunk(self.setup, pow, [(2, 3), (3, 2)])
        self.assertEqual(pt.decode_chunk_outcome(run(parts)), ([8, 9], None))

    def test_chunk_with_an_unpicklable_value(self):
        import threading
        parts = pt.encode_chunk(self.setup, lambda x: threading.Lock() if x else x, [(0,), (1,)])
        values, error = pt.decode_chunk_outcome(run(parts))
        self.assertEqual(values, [0])
        self.assertIsInstance(error, (pickle.PicklingError, TypeError))

    def test_initializer_runs_once_and_its_failure_breaks_only_its_executor(self):
        setup = pt.executor_setup(initializer=print, initargs=("",))
        # With this directory in the path, _count_init travels by reference: the "worker" (this
        # process) counts in this module.
        here = os.path.dirname(helpers.__file__)
        counter = pt.executor_setup(initializer=helpers.count_init, initargs=("k",), path=[here])
        for _ in range(3):
            call(counter, int)
        self.assertEqual(helpers.init_count("k"), 1)
        broken = pt.executor_setup(initializer=helpers.raise_init)
        with self.assertRaises(pt.ExecutorSetupError) as caught:
            call(broken, int)
        self.assertIsInstance(caught.exception, concurrent.futures.BrokenExecutor)
        self.assertIsInstance(caught.exception.__cause__, helpers.InitFailed)
        values, error = pt.decode_chunk_outcome(run(pt.encode_chunk(broken, int, [(1,)])))
        self.assertEqual(values, [])
        self.assertIsInstance(error, pt.ExecutorSetupError)
        self.assertEqual(call(self.setup, int, "4"), 4)
        self.assertEqual(call(setup, int, "5"), 5)

    def test_globals_path_and_wdir_are_per_executor(self):
        with tempfile.TemporaryDirectory() as wdir:
            setup = pt.executor_setup(globals={"ANSWER": 42}, path=["/nonexistent/x"], wdir=wdir)
            probe = lambda: (globals().get("ANSWER"), __import__("sys").path[0],  # noqa: E731
                             __import__("os").getcwd())
            self.assertEqual(call(setup, probe),
                             (42, "/nonexistent/x", os.path.realpath(wdir)))
            answer, first, cwd = call(self.setup, probe)
            self.assertIsNone(answer)
            self.assertNotEqual(first, "/nonexistent/x")
            self.assertNotEqual(cwd, os.path.realpath(wdir))

    def test_path_entries_leave_with_their_executor_and_others_stay(self):
        import sys
        setup = pt.executor_setup(path=["/nonexistent/a"])
        call(setup, lambda: __import__("sys").path.append("/nonexistent/added-by-a-task"))
        call(self.setup, int)
        self.assertNotIn("/nonexistent/a", sys.path)
        self.assertIn("/nonexistent/added-by-a-task", sys.path)
        sys.path.remove("/nonexistent/added-by-a-task")

    def test_not_a_python_task(self):
        for payload in (b"", b"hello", b"MPGT" + bytes(40),
                        struct.pack("<4sBBHII16s", b"MPGT", 1, 1, 0, 0, 100, bytes(16))):
            with self.assertRaises(pt.NotAPythonTask):
                pt.run_payload(payload)
        outcome = run(pt.encode_call(self.setup, int))
        with self.assertRaises(pt.NotAPythonTask):
            pt.run_payload(outcome)
        with self.assertRaises(pt.NotAPythonTask):
            pt.decode_outcome(b"".join(pt.encode_call(self.setup, int)))

    def test_keyboard_interrupt_escapes(self):
        def interrupted():
            raise KeyboardInterrupt
        with self.assertRaises(KeyboardInterrupt):
            pt.run_payload(b"".join(pt.encode_call(self.setup, interrupted)))


if __name__ == "__main__":
    unittest.main()
