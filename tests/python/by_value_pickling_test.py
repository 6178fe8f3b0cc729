"""mpigate._python_task's choice of pickler: calls whose functions and classes all travel by
reference go through the standard pickler, anything that must travel by value through cloudpickle.
Each payload is run by another interpreter (as a worker does), whose __main__ is not this test and
whose path does not hold this test's directory, so that a function or class sent by reference
where it had to go by value fails there."""

import dataclasses
import functools
import math
import operator
import os
import subprocess
import sys
import unittest

import cloudpickle

from mpigate import _python_task as pt
import python_runtime_helpers as helpers

# The mpigate package only: not this directory, where the helpers module lives.
_WORKER_PATH = os.pathsep.join(p for p in sys.path if os.path.isdir(os.path.join(p, "mpigate")))
_RUN = ("import sys; from mpigate import _python_task as pt; "
        "sys.stdout.buffer.write(b''.join(pt.run_payload(sys.stdin.buffer.read())))")


def in_worker(setup, fn, *args, **kwargs):
    """fn(*args, **kwargs), encoded here, run by another interpreter, decoded here."""
    payload = b"".join(pt.encode_call(setup, fn, args, kwargs))
    # Not in this directory either: an interpreter's path starts with its current directory.
    outcome = subprocess.run([sys.executable, "-c", _RUN], input=payload, capture_output=True,
                             cwd="/", env=dict(os.environ, PYTHONPATH=_WORKER_PATH),
                             check=True).stdout
    return pt.decode_outcome(outcome)


def twice(x):
    return 2 * x


@dataclasses.dataclass
class Point:
    x: int
    y: int


class PicklerChoiceTest(unittest.TestCase):

    def setUp(self):
        self.setup = pt.executor_setup()

    def test_a_call_by_reference_runs_elsewhere(self):
        self.assertEqual(in_worker(self.setup, math.factorial, 5), 120)
        self.assertEqual(in_worker(self.setup, operator.add, 2, 3), 5)

    def test_a_main_function_among_the_arguments_goes_by_value(self):
        self.assertEqual(in_worker(self.setup, sorted, [3, -1, 2], key=twice), [-1, 2, 3])

    def test_an_instance_of_a_main_class_goes_with_its_class(self):
        self.assertEqual(in_worker(self.setup, getattr, Point(3, 4), "y"), 4)

    def test_a_lambda_or_a_local_function_inside_the_arguments_goes_by_value(self):
        self.assertEqual(in_worker(self.setup, functools.reduce, lambda a, b: a * b, [1, 2, 3, 4]),
                         24)

        def local(values):
            return max(values)

        self.assertEqual(in_worker(self.setup, operator.call, local, [1, 9]), 9)
        # Deep in the arguments, and back in the outcome: reduce of one item returns it.
        [returned] = in_worker(self.setup, functools.reduce, operator.call, [[lambda: 1]])
        self.assertEqual(returned(), 1)

    def test_a_module_registered_by_value_goes_by_value(self):
        cloudpickle.register_pickle_by_value(helpers)
        self.addCleanup(cloudpickle.unregister_pickle_by_value, helpers)
        self.assertEqual(in_worker(self.setup, sorted, [3, 1, 2], key=helpers.init_count),
                         [3, 1, 2])


if __name__ == "__main__":
    unittest.main(verbosity=2)
