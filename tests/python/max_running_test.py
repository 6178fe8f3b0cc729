"""mpigate.Executor(max_running=...) end to end: a session's cap on its running tasks
(OpenSession.max_running_tasks) against a real mpigate-server with 3 MPI workers.

The capped executor's tasks go out in one SubmitTasks message (map() queues them all at once, and
the writer sends what is queued together), which the service accepts under one lock: without the
cap the first dispatch would start all of them at once, so the status read when the first has
started tells whether the cap held. Another executor's tasks must then start on the workers left
free.
"""

import faulthandler
import signal
import unittest

import grpc

import mpigate
from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from server_process import ServerProcess

# Long enough that the checks below surely happen while the first task runs (the C++ tests'
# kBusyMs).
BUSY_MS = b"1500"
# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60

SERVER = ServerProcess(workers=3, flags=["--max-tasks-per-worker=1"])


def session_status(client_name):
    """The pool status's entry for the session of `client_name`."""
    with grpc.insecure_channel(SERVER.target) as channel:
        status = gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
            gateway_pb2.GetPoolStatusRequest(), timeout=PATIENCE_S)
    for session in status.session_list:
        if session.client_name == client_name:
            return session
    raise AssertionError(f"no session of {client_name} in {status}")


class MaxRunningTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        SERVER.start()

    @classmethod
    def tearDownClass(cls):
        SERVER.stop_checked()

    def connect(self, name, **options):
        executor = mpigate.Executor(SERVER.target, client_name=name, **options)
        self.addCleanup(executor.shutdown, wait=True, cancel_futures=True)
        return executor

    def test_one_task_runs_at_a_time_and_other_clients_take_the_free_workers(self):
        capped = self.connect("capped", max_running=1)
        other = self.connect("other")
        results = capped.map("sleep", [BUSY_MS] * 3)
        # The first of them to start (map gives no futures: the status shows it).
        status = None
        for _ in range(100000):
            status = session_status("capped")
            if status.running_tasks > 0:
                break
        self.assertEqual(status.max_running_tasks, 1)
        self.assertEqual(status.running_tasks, 1)
        self.assertEqual(status.queued_tasks, 2)

        # Two workers are free for another client while the first sleep runs.
        theirs = [other.submit("sleep", BUSY_MS) for _ in range(2)]
        for future in theirs:
            self.assertTrue(future.wait_started(PATIENCE_S))
        self.assertLessEqual(session_status("capped").running_tasks, 1)
        self.assertEqual(session_status("other").max_running_tasks, 0)
        self.assertEqual(len(list(results)), 3)
        for future in theirs:
            future.result(timeout=PATIENCE_S)

    def test_a_gang_larger_than_the_cap_fails_with_invalid_argument(self):
        capped = self.connect("capped gang", max_running=1)
        future = capped.submit("echo", b"", gang_size=2)
        with self.assertRaises(mpigate.TaskError) as raised:
            future.result(timeout=PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("max_running_tasks", str(raised.exception))

    def test_a_cap_that_is_not_a_positive_int_is_a_value_error(self):
        for bad in (0, -1, 1.5, "2", 1 << 32):
            with self.assertRaises(ValueError, msg=repr(bad)):
                mpigate.Executor(SERVER.target, max_running=bad)


if __name__ == "__main__":
    # On Bazel's timeout (SIGTERM), every thread's stack shows where the test hung.
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
