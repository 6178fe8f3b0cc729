"""The Python client's interrupt, kill, progress and session resume, end to end: a real
mpigate-server and its MPI workers, reached directly or through a TCP proxy that cuts every
connection on demand (tcp_proxy.py), and a client process killed with SIGKILL whose session a
second executor resumes with its token.

The server hands each worker one task at a time (--max-tasks-per-worker=1), so that a task
submitted while every worker is busy stays queued; it keeps a broken session for 20 s
(--resume-grace-s). Tests run one after another, each shutting its executors down, so the pool's
counters between two points of a test count that test's tasks only.
"""

import concurrent.futures
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import unittest

import grpc

import mpigate
from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from server_process import ServerProcess
from tcp_proxy import TcpProxy

# Far longer than any test: a task that ends sooner was stopped.
LONG_MS = b"600000"
# Long enough that a test's next few steps surely happen while it runs (client_test's BUSY_MS,
# doubled: a process is started meanwhile).
BUSY_MS = b"3000"
# How long a test waits for what must happen soon; reached only when something is wrong.
PATIENCE_S = 60

SERVER = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1", "--resume-grace-s=20"])

# The process whose session a test resumes: it submits a sleep per worker and three echoes behind
# them, prints its resume token and task ids once the sleeps run, and waits to be killed.
DOOMED_CLIENT = """
import sys
import mpigate
executor = mpigate.Executor(sys.argv[1], client_name="doomed")
sleeps = [executor.submit("sleep", sys.argv[2].encode()) for _ in range(executor.num_workers)]
echoes = [executor.submit("echo", b"echo %d" % i) for i in range(3)]
for future in sleeps:
    assert future.wait_started(60)
print(executor.resume_token.hex(), *[f.task_id for f in sleeps + echoes], flush=True)
sys.stdin.read()
"""


def pool_status():
    with grpc.insecure_channel(SERVER.target) as channel:
        return gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
            gateway_pb2.GetPoolStatusRequest(), timeout=PATIENCE_S)


def tasks_ended():
    status = pool_status()
    return status.tasks_succeeded, status.tasks_failed, status.tasks_cancelled


class SessionFeaturesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        SERVER.start()

    @classmethod
    def tearDownClass(cls):
        SERVER.stop_checked()

    def connect(self, target=None, **options):
        executor = mpigate.Executor(target or SERVER.target, client_name=self.id(), **options)
        self.addCleanup(executor.shutdown, wait=True, cancel_futures=True)
        return executor

    def occupy_workers(self, executor, duration=LONG_MS):
        """A sleep on every worker; returns their futures once all of them run (have reported
        progress: a task handed to a worker may wait in its backlog for a moment). Whatever is
        left of them is killed after the test."""
        busy = [executor.submit("sleep", duration) for _ in range(executor.num_workers)]
        self.addCleanup(lambda: [future.kill() for future in busy])
        for future in busy:
            self.await_progress(future)
        return busy

    def await_progress(self, future):
        reported = threading.Event()
        future.add_progress_callback(lambda f, p: reported.set())
        self.assertTrue(reported.wait(PATIENCE_S) or future.progress() is not None)

    def assert_stopped(self, future, how):
        """`future`'s task was stopped while running: it ends, well before its sleep would,
        with TaskError CANCELLED saying `how`."""
        with self.assertRaises(mpigate.TaskError) as raised:
            future.result(PATIENCE_S)
        self.assertEqual(raised.exception.code, grpc.StatusCode.CANCELLED)
        self.assertIn(how, raised.exception.message)
        self.assertFalse(future.cancelled())

    # --- interrupt, kill, progress ---

    def test_interrupt_stops_a_running_sleep_and_cancels_a_queued_task(self):
        executor = self.connect()
        running, other = self.occupy_workers(executor)
        queued = executor.submit("echo", b"never")
        self.assertFalse(running.cancel(), "cancel() does not touch a running task")

        self.assertTrue(queued.interrupt())
        self.assertTrue(queued.cancelled())
        self.assertTrue(running.interrupt())
        self.assert_stopped(running, "sleep interrupted after")
        self.assertFalse(running.interrupt(), "an ended task is not interrupted")
        self.assertTrue(queued.interrupt(), "a cancelled task stays cancelled")
        # The other worker's task was left alone; a new task takes the freed worker.
        self.assertFalse(other.done())
        self.assertEqual(executor.submit("echo", b"next").result(PATIENCE_S), b"next")
        self.assertTrue(other.interrupt())
        self.assert_stopped(other, "sleep interrupted after")

    def test_interrupt_from_a_done_callback_does_not_wait(self):
        executor = self.connect()
        first, _ = self.occupy_workers(executor, BUSY_MS)
        long = executor.submit("sleep", LONG_MS)
        answers = []
        first.add_done_callback(lambda _: answers.append(long.interrupt()))
        # The callback runs on the reader thread, which delivers the answer: interrupt() sends its
        # request and returns False at once. Still queued or just started on the worker the first
        # sleep freed, the long sleep then ends long before its time.
        with self.assertRaises((concurrent.futures.CancelledError, mpigate.TaskError)):
            long.result(PATIENCE_S)
        self.assertEqual(answers, [False])

    def test_kill_ends_a_running_task_and_its_runner_is_replaced(self):
        executor = self.connect()
        busy = self.occupy_workers(executor)
        queued = executor.submit("echo", b"never")
        self.assertTrue(queued.kill())
        self.assertTrue(queued.cancelled())
        for future in busy:
            self.assertTrue(future.kill())
        for future in busy:
            self.assert_stopped(future, "")
        # Fresh runners take the next tasks.
        results = [executor.submit("echo", b"%d" % i) for i in range(4)]
        self.assertEqual([f.result(PATIENCE_S) for f in results], [b"0", b"1", b"2", b"3"])

    def test_progress_of_a_running_sleep_reaches_the_future_and_its_callback(self):
        executor = self.connect()
        future = executor.submit("sleep", LONG_MS)
        reports = []
        reported = threading.Event()
        future.add_progress_callback(lambda f, p: (reports.append((f, p)), reported.set()))
        self.assertTrue(reported.wait(PATIENCE_S))
        progress = future.progress()
        self.assertIsInstance(progress, mpigate.Progress)
        self.assertTrue(0 <= progress.fraction < 1, progress)
        self.assertRegex(progress.message, r"^slept \d+ of 600000 ms$")
        self.assertIs(reports[0][0], future)
        self.assertTrue(future.interrupt())
        self.assert_stopped(future, "sleep interrupted after")
        count = len(reports)
        self.assertIsNotNone(future.progress(), "the last report stays")
        # The stream is ordered: a report sent after the end would come before this echo's result.
        self.assertEqual(executor.submit("echo", b"after").result(PATIENCE_S), b"after")
        self.assertEqual(len(reports), count, "no report after the end")

    # --- resuming a session ---

    def test_a_session_resumes_after_its_connection_is_cut_mid_run(self):
        proxy = TcpProxy(SERVER.target[len("unix:"):])
        self.addCleanup(proxy.close)
        before = tasks_ended()
        with mpigate.Executor(proxy.target, client_name=self.id()) as executor:
            self.assertTrue(executor.resume_token)
            sleeps = self.occupy_workers(executor, BUSY_MS)
            echoes = [executor.submit("echo", b"before %d" % i) for i in range(50)]
            chunks = executor.map("echo", [b"map %d" % i for i in range(40)], chunksize=8)
            self.assertGreater(proxy.drop_all(), 0)
            # Submitted while the session is away: sent once it is back.
            later = [executor.submit("echo", b"after %d" % i) for i in range(50)]
            self.assertEqual([f.result(PATIENCE_S) for f in sleeps], [b"", b""])
            self.assertEqual([f.result(PATIENCE_S) for f in echoes],
                             [b"before %d" % i for i in range(50)])
            self.assertEqual(list(chunks), [b"map %d" % i for i in range(40)])
            self.assertEqual([f.result(PATIENCE_S) for f in later],
                             [b"after %d" % i for i in range(50)])
        self.assertGreaterEqual(proxy.accepted, 2, "the client connected again")
        # Every task ran once: 2 sleeps, 100 echoes and 5 chunks succeeded, nothing else.
        after = tasks_ended()
        self.assertEqual([a - b for a, b in zip(after, before)], [107, 0, 0])

    def test_a_second_executor_resumes_a_killed_processs_session_with_its_token(self):
        before = tasks_ended()
        doomed = subprocess.Popen([sys.executable, "-c", DOOMED_CLIENT, SERVER.target, BUSY_MS],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = doomed.stdout.readline().split()
        doomed.kill()
        doomed.wait()
        doomed.stdout.close()
        doomed.stdin.close()
        self.assertEqual(len(line), 6, f"the client process printed {line}")
        token, task_ids = bytes.fromhex(line[0].decode()), [int(i) for i in line[1:]]

        executor = self.connect(resume_token=token)
        self.assertEqual(executor.resume_token, token)
        reattached = executor.reattached
        self.assertEqual([f.task_id for f in reattached], task_ids)
        self.assertEqual([f.result(PATIENCE_S) for f in reattached],
                         [b"", b"", b"echo 0", b"echo 1", b"echo 2"])
        # New tasks take ids after the session's.
        new = executor.submit("echo", b"new")
        self.assertGreater(new.task_id, max(task_ids))
        self.assertEqual(new.result(PATIENCE_S), b"new")
        executor.shutdown(wait=True)
        after = tasks_ended()
        self.assertEqual([a - b for a, b in zip(after, before)], [6, 0, 0])

        # The session is closed: its token resumes nothing any more.
        with self.assertRaises(ConnectionError) as raised:
            mpigate.Executor(SERVER.target, resume_token=token, connect_timeout=PATIENCE_S)
        self.assertIn("NOT_FOUND", str(raised.exception))


if __name__ == "__main__":
    faulthandler.register(signal.SIGTERM)
    unittest.main()
