"""The pool's status from Python on a pool that loses a worker (issue 24): Executor.status(),
mpigate.status() and mpigate.futures.MPIPoolExecutor.status() say it is degraded (workers_down,
degraded_reason naming the lost worker's pid) while num_workers stays the pool's size, and whole
again once it is.

The replacements are held before their hello (MPIGATE_TEST_STALL_BEFORE_HELLO, a file the test
makes and removes) so that the degraded pool stays degraded while the test looks; each hung one
is given up after the server's bootup timeout, and the pool heals once the file is gone.
"""

import os
import signal
import unittest

import mpigate
from mpigate.futures import MPIPoolExecutor
from server_process import ServerProcess


def worker_pids(pid):
    """The mpigate-worker processes among `pid`'s descendants."""
    found = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        # Each thread's children apart: the gateway's MPI thread started Open MPI's daemon.
        children = []
        try:
            for thread in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{thread}/children", encoding="ascii") as file:
                    children += [int(child) for child in file.read().split()]
        except FileNotFoundError:
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/comm", encoding="ascii") as file:
                    if file.read().strip() == "mpigate-worker":
                        found.append(child)
            except FileNotFoundError:
                continue
            pending.append(child)
    return found


def await_status(ask, done, attempts=100000):
    """Asks for the status until `done` holds for it (each a round trip); returns that status."""
    for _ in range(attempts):
        status = ask()
        if done(status):
            return status
    raise AssertionError(f"the pool status never showed what the test waited for: {status}")


class PoolStatusTest(unittest.TestCase):

    def test_a_lost_worker_shows_as_degraded_then_whole_again(self):
        stall = os.path.join(os.environ["TEST_TMPDIR"], "stall-before-hello")
        server = ServerProcess(workers=2, flags=[
            "--bootup_timeout=3s", f"--worker_env=MPIGATE_TEST_STALL_BEFORE_HELLO={stall}"])
        server.start()
        try:
            with mpigate.Executor(server.target) as executor:
                status = executor.status()
                self.assertEqual(status.workers, 2)
                self.assertEqual(status.workers_down, 0)
                self.assertEqual(status.degraded_reason, "")

                with open(stall, "w", encoding="ascii") as file:
                    file.write("stall\n")
                victim = worker_pids(server.pid)[0]
                os.kill(victim, signal.SIGKILL)
                status = await_status(executor.status, lambda status: status.workers_down == 1)
                self.assertRegex(status.degraded_reason,
                                 rf"^1 of 2 workers out of service; worker [01] on .* \(pid "
                                 rf"{victim}\) was lost: ")
                self.assertEqual(executor.num_workers, 2)
                self.assertEqual(mpigate.status(server.target).workers_down, 1)
                with MPIPoolExecutor(endpoint=server.target) as pool:
                    self.assertEqual(pool.status().workers_down, 1)
                    self.assertIn(f"(pid {victim}) was lost", pool.status().degraded_reason)
                    self.assertEqual(pool.num_workers, 2)

                os.remove(stall)
                await_status(executor.status, lambda status: status.workers_down == 0 and
                             not status.degraded_reason)
        finally:
            server.stop_checked()

    def test_a_service_that_cannot_be_asked_raises_connection_error(self):
        with self.assertRaisesRegex(ConnectionError, "cannot ask unix:/nonexistent/s.sock"):
            mpigate.status("unix:/nonexistent/s.sock", timeout=1.0)


if __name__ == "__main__":
    unittest.main()
