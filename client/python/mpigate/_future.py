"""mpigate.Future: a concurrent.futures.Future of one task of a session.

It is a concurrent.futures.Future in every respect (result, exception, done callbacks, wait,
as_completed), with these differences and additions:

- cancel() asks the service: it sends CancelTasks and waits for the answer (one round trip), and
  returns True only if the service cancelled the task while it was still queued. A task handed to a
  worker counts as running and is not cancelled, as in ProcessPoolExecutor (see the README's
  --max-tasks-per-worker).
- interrupt() does what cancel() does to a queued task and, in the same round trip, asks the
  worker to set a running task's cancellation flag (a running Python task sees KeyboardInterrupt);
  kill() has the worker kill the process running it instead. concurrent.futures has no RUNNING to
  CANCELLED transition, so a task stopped while running ends with TaskError whose code is
  grpc.StatusCode.CANCELLED (its message says how it was stopped); a queued one ends CANCELLED.
- progress() is the task's latest progress report, and add_progress_callback() calls a function
  with each report that arrives after it (TaskContext::ReportProgress on the worker).
- wait_started(timeout) blocks until the task has started or ended.

Thread-safety: every method may be called from any thread. The future changes state, and receives
its progress, only on the session's reader thread (see _session.py), which also runs done and
progress callbacks: they must not block. cancel(), interrupt() and kill() called from such a
callback send their request without waiting for the service's answer, and return False unless the
future was already cancelled.
"""

import collections
import concurrent.futures
import logging
import threading

_LOGGER = logging.getLogger("mpigate")

# A task's progress report: `fraction` from 0 to 1 and the function's `message` (may be empty).
Progress = collections.namedtuple("Progress", ["fraction", "message"])

# What a cancel request does to the tasks it names that are running (CancelTasks).
CANCEL_PENDING_ONLY = "pending"
CANCEL_INTERRUPT = "interrupt"
CANCEL_KILL = "kill"


class Future(concurrent.futures.Future):
    """The future of one task, returned by Executor.submit."""

    def __init__(self, session, task_id, chunk=False):
        super().__init__()
        self._session = session
        self._task_id = task_id
        # A chunk of a map: the result is a list with one entry (bytes, or an exception) per item.
        # None for a reattached task (Executor.reattached), whose kind is not known: a list when
        # its outcome has items.
        self._chunk = chunk
        # Set once the task has started or ended.
        self._started = threading.Event()
        # Guards the two below. Written by the reader thread; callbacks are added by any thread.
        self._progress_lock = threading.Lock()
        self._progress = None
        self._progress_callbacks = []

    @property
    def task_id(self):
        """The task's id in its session (0 for a task that never reached the service)."""
        return self._task_id

    def cancel(self):
        """Cancels the task if the service still has it queued; True if it is cancelled."""
        if self.running():
            return False
        return self._request_cancel(CANCEL_PENDING_ONLY)

    def interrupt(self):
        """Cancels the task if it is still queued, as cancel() does, and if it is running asks its
        worker to set its cancellation flag, in one round trip. True if the task is (now or
        already) CANCELLED or its worker was told to interrupt it; False if it had ended. An
        interrupted task runs on until its function returns (or lets KeyboardInterrupt escape):
        it then ends as its function says, with TaskError of code CANCELLED if it gave up.
        Functions that never look at their flag are not stopped: see kill()."""
        return self._request_cancel(CANCEL_INTERRUPT)

    def kill(self):
        """As interrupt(), but a running task's runner process is killed (and replaced) and the
        task ends at once with TaskError of code CANCELLED, whatever its function was doing. A
        function that runs inside the worker process (a pool with --isolation=none, a gang
        function) cannot be killed: for those this is interrupt()."""
        return self._request_cancel(CANCEL_KILL)

    def wait_started(self, timeout=None):
        """Waits until the task runs or has ended; False if `timeout` seconds passed first."""
        return self._started.wait(timeout)

    def progress(self):
        """The task's latest progress report, a Progress(fraction, message), or None if it has
        reported none (yet). Reports arrive at most every 20 ms per task; the last one before the
        task ended stays."""
        with self._progress_lock:
            return self._progress

    def add_progress_callback(self, fn):
        """Calls `fn(future, progress)` for each progress report that arrives after this call, on
        the session's reader thread (quick, never blocking, as a done callback), never once the
        future is done; added to a done future, it is never called. Callbacks run in the order
        they were added; one that raises is logged and the others still run."""
        with self._progress_lock:
            # A done future reports no more progress: keeping `fn` would only hold what it holds.
            if not self.done():
                self._progress_callbacks.append(fn)

    def _request_cancel(self, mode):
        # Known answers need no round trip: only the service knows whether a queued task started,
        # and whether a running one has ended.
        if self.cancelled():
            return True
        if self.done() or self._session is None:
            return False
        interrupted = self._session.cancel([self._task_id], wait=True, mode=mode)
        return interrupted > 0 or self.cancelled()

    # The session's side, on its reader thread: the one place this future changes state.

    def _mark_running(self):
        if not self.running() and not self.done():
            self.set_running_or_notify_cancel()
        self._started.set()

    def _report_progress(self, fraction, message):
        progress = Progress(fraction, message)
        with self._progress_lock:
            if self.done():
                return
            self._progress = progress
            callbacks = list(self._progress_callbacks)
        for callback in callbacks:
            try:
                callback(self, progress)
            except Exception:  # As concurrent.futures does for a done callback that raises.
                _LOGGER.exception("the progress callback %r of task %d raised", callback,
                                  self._task_id)

    def _finish(self, result=None, exception=None):
        if exception is not None:
            self.set_exception(exception)
        else:
            self.set_result(result)
        self._ended()

    def _mark_cancelled(self, error):
        """Ends the future of a task the service cancelled: CANCELLED if it had not started, else
        (the task was interrupted or killed, or the service drained) failed with `error`."""
        # The base class's cancel() ends a pending future; set_running_or_notify_cancel() then
        # tells wait() and as_completed() waiters, as an executor does for a future cancelled early.
        if concurrent.futures.Future.cancel(self):
            self.set_running_or_notify_cancel()
        else:
            self.set_exception(error)
        self._ended()

    def _ended(self):
        self._started.set()
        with self._progress_lock:
            self._progress_callbacks = []
