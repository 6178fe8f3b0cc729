"""mpigate.Future: a concurrent.futures.Future of one task of a session.

It is a concurrent.futures.Future in every respect (result, exception, done callbacks, wait,
as_completed), with two differences:

- cancel() asks the service: it sends CancelTasks and waits for the answer (one round trip), and
  returns True only if the service cancelled the task while it was still queued. A task handed to a
  worker counts as running and is not cancelled, as in ProcessPoolExecutor (see the README's
  --max-tasks-per-worker).
- wait_started(timeout) blocks until the task has started or ended.

Thread-safety: every method may be called from any thread. The future changes state only on the
session's reader thread (see _session.py), which also runs done callbacks: they must not block.
cancel() called from a done callback does not wait for the service's answer, and returns False
unless the future was already cancelled.
"""

import concurrent.futures
import threading


class Future(concurrent.futures.Future):
    """The future of one task, returned by Executor.submit."""

    def __init__(self, session, task_id, chunk=False):
        super().__init__()
        self._session = session
        self._task_id = task_id
        # A chunk of a map: the result is a list with one entry (bytes, or an exception) per item.
        self._chunk = chunk
        # Set once the task has started or ended.
        self._started = threading.Event()

    @property
    def task_id(self):
        """The task's id in its session (0 for a task that never reached the service)."""
        return self._task_id

    def cancel(self):
        """Cancels the task if the service still has it queued; True if it is cancelled."""
        if self.cancelled():
            return True
        if self.running() or self.done() or self._session is None:
            return False
        self._session.cancel([self._task_id], wait=True)
        return self.cancelled()

    def wait_started(self, timeout=None):
        """Waits until the task runs or has ended; False if `timeout` seconds passed first."""
        return self._started.wait(timeout)

    # The session's side, on its reader thread: the one place this future changes state.

    def _mark_running(self):
        if not self.running() and not self.done():
            self.set_running_or_notify_cancel()
        self._started.set()

    def _finish(self, result=None, exception=None):
        if exception is not None:
            self.set_exception(exception)
        else:
            self.set_result(result)
        self._started.set()

    def _mark_cancelled(self, error):
        """Ends the future of a task the service cancelled: CANCELLED if it had not started, else
        (the task was interrupted, or the service drained) failed with `error`."""
        # The base class's cancel() ends a pending future; set_running_or_notify_cancel() then
        # tells wait() and as_completed() waiters, as an executor does for a future cancelled early.
        if concurrent.futures.Future.cancel(self):
            self.set_running_or_notify_cancel()
        else:
            self.set_exception(error)
        self._started.set()
