"""mpigate.futures with a private pool: with no service to find, MPIPoolExecutor starts an
mpigate-server of its own (max_workers workers) and stops it at shutdown, when it is dropped, and
when its process exits with or without shutting it down, also when that process is killed.

This process is a child subreaper, so that whatever the private servers spawn (MPI daemon,
workers, task runners) is reparented to it; each test then waits for every child to end, which
hangs (and fails on Bazel's timeout) if anything is left behind.
"""

import ctypes
import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest
from unittest import mock

from mpigate import futures
from server_process import runfile

PATIENCE_S = 60
_PR_SET_CHILD_SUBREAPER = 36

# No service to find: the executors start their own.
ENVIRONMENT = {
    "MPIGATE_ENDPOINT": "",
    "MPIGATE_ENDPOINT_FILE": "/nonexistent/mpigate-endpoint",
    "MPIGATE_SERVER": runfile("server/mpigate-server"),
}


def wait_for_every_child():
    """Returns once every child of this process (and so every orphan it reaped) has ended."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def children():
    """The pids of this process's live children."""
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children", encoding="ascii") as file:
        return [int(pid) for pid in file.read().split()]


class PrivatePoolTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")

    def setUp(self):
        patcher = mock.patch.dict(os.environ, ENVIRONMENT)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_an_executor_starts_and_stops_a_pool_of_max_workers(self):
        executor = futures.MPIPoolExecutor(max_workers=2)
        self.assertEqual(children(), [])  # started on first use, as mpi4py spawns
        self.assertEqual(executor.num_workers, 2)
        self.assertEqual(len(children()), 1)  # the server's keeper
        self.assertEqual(list(executor.map(abs, range(-3, 3), chunksize=2)), [3, 2, 1, 0, 1, 2])
        pids = {f.result(PATIENCE_S) for f in [executor.submit(os.getpid) for _ in range(20)]}
        self.assertNotIn(os.getpid(), pids)
        service = executor._resources.service
        executor.shutdown(wait=True)
        self.assertEqual(service._process.returncode, 0)  # the server exited 0 on SIGTERM
        self.assertFalse(os.path.exists(service.target[len("unix:"):]))
        self.assertEqual(executor.num_workers, 0)
        wait_for_every_child()

    def test_mpi4py_futures_max_workers_sizes_the_pool(self):
        with mock.patch.dict(os.environ, {"MPI4PY_FUTURES_MAX_WORKERS": "1"}):
            with futures.MPIPoolExecutor() as executor:
                self.assertEqual(executor.num_workers, 1)
                self.assertEqual(executor.submit(pow, 3, 2).result(PATIENCE_S), 9)
        wait_for_every_child()

    def test_workers_import_mpigate_futures_without_pythonpath(self):
        # The pool's processes inherit no PYTHONPATH: the executor's setup puts the package's
        # roots on their path, so that mpigate.futures (get_comm_workers) travels by reference.
        environment = dict(os.environ)
        environment.pop("PYTHONPATH", None)
        with mock.patch.dict(os.environ, environment, clear=True):
            with futures.MPIPoolExecutor(2) as executor:
                size, total = executor.submit(_gang_sum, gang_size=2).result(PATIENCE_S)
                self.assertEqual((size, total), (2, 1))
                error = executor.submit(futures.get_comm_workers).exception(PATIENCE_S)
                self.assertIsInstance(error, RuntimeError)  # not a gang: not an ImportError
                self.assertIn("gang", str(error))
        wait_for_every_child()

    def test_shutdown_without_wait_stops_the_pool_after_the_last_call(self):
        executor = futures.MPIPoolExecutor(1)
        future = executor.submit(time.sleep, 0.5)
        executor.shutdown(wait=False)
        self.assertIsNone(future.result(PATIENCE_S))
        wait_for_every_child()

    def test_a_dropped_executor_stops_its_pool(self):
        executor = futures.MPIPoolExecutor(1)
        self.assertEqual(executor.submit(abs, -1).result(PATIENCE_S), 1)
        del executor
        wait_for_every_child()

    def test_a_broken_executor_on_a_private_pool(self):
        executor = futures.MPIPoolExecutor(1, initializer=divmod, initargs=(1, 0))
        executor.submit(time.sleep, 0).cancel()
        future = executor.submit(time.sleep, 0)
        with self.assertRaises(futures.BrokenExecutor):
            executor.submit(time.sleep, 0).result(PATIENCE_S)
        with self.assertRaises(futures.BrokenExecutor):
            future.result(PATIENCE_S)
        with self.assertRaises(futures.BrokenExecutor):
            executor.submit(time.sleep, 0)
        self.assertEqual(executor.num_workers, 0)
        executor.shutdown()
        wait_for_every_child()

    def test_a_client_that_exits_leaves_no_process(self):
        script = textwrap.dedent("""
            import os, sys
            from mpigate.futures import MPIPoolExecutor
            executor = MPIPoolExecutor(1)
            print(executor.submit(os.getpid).result(), flush=True)
            if sys.argv[1] == "kill":
                os.kill(os.getpid(), 9)
            """)
        for how in ("exit", "kill"):
            client = subprocess.run([sys.executable, "-c", script, how], capture_output=True,
                                    timeout=PATIENCE_S, check=False)
            self.assertTrue(client.stdout.strip().isdigit(), client.stderr)
            self.assertEqual(client.returncode, 0 if how == "exit" else -signal.SIGKILL)
            wait_for_every_child()

    def test_no_server_binary_or_one_that_fails_is_a_clear_error(self):
        with mock.patch.dict(os.environ, {"MPIGATE_SERVER": "/nonexistent/mpigate-server"}):
            with self.assertRaises(FileNotFoundError) as raised:
                futures.MPIPoolExecutor(1).submit(abs, 1)
            self.assertIn("MPIGATE_SERVER", str(raised.exception))
        with mock.patch.dict(os.environ, {"MPIGATE_SERVER": "/bin/false"}):
            with self.assertRaises(RuntimeError) as raised:
                futures.MPIPoolExecutor(1).bootup()
            self.assertIn("before it served", str(raised.exception))
        wait_for_every_child()


def _gang_sum():
    comm = futures.get_comm_workers()
    return comm.Get_size(), comm.allreduce(comm.Get_rank())


if __name__ == "__main__":
    faulthandler.register(signal.SIGTERM, chain=True)
    unittest.main(verbosity=2)
