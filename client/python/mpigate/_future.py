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
future was already cancelled. (A future that never reached the service ends on the thread that
made it, before anyone else has it.)

Most futures are never waited for with a timeout, nor given a callback while pending, nor passed
to wait() or as_completed() before they are done: a future makes its Condition only when something
must wait on it (the base class makes one, and an Event and a Lock were made, for every task). The
state changes on one thread at a time (the reader's), and waiters look at the state under the
Condition once it exists; see _settle() for why no wake-up is lost.
"""

import collections
import concurrent.futures
from concurrent.futures import _base
import logging
import threading

_LOGGER = logging.getLogger("mpigate")

_PENDING = _base.PENDING
_RUNNING = _base.RUNNING
_CANCELLED = _base.CANCELLED_AND_NOTIFIED
_FINISHED = _base.FINISHED
_DONE = frozenset((_base.CANCELLED, _CANCELLED, _FINISHED))
# Makes futures' Conditions, and guards their progress.
_lazy_lock = threading.Lock()

# A task's progress report: `fraction` from 0 to 1 and the function's `message` (may be empty).
Progress = collections.namedtuple("Progress", ["fraction", "message"])

# What a cancel request does to the tasks it names that are running (CancelTasks).
CANCEL_PENDING_ONLY = "pending"
CANCEL_INTERRUPT = "interrupt"
CANCEL_KILL = "kill"


class Future(concurrent.futures.Future):
    """The future of one task, returned by Executor.submit."""

    def __init__(self, session, task_id, chunk=False):  # pylint: disable=super-init-not-called
        # Not the base class's __init__, which makes the Condition at once: _condition does.
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._done_callbacks = []
        self._lazy_condition = None
        self._lazy_waiters = None  # wait()'s and as_completed()'s, under the Condition
        # Someone waits for the start (wait_started), under the Condition: only then is the
        # start worth a wake-up (a result() waiter would only wait again).
        self._start_waited = False
        self._session = session
        self._task_id = task_id
        # A chunk of a map: the result is a list with one entry (bytes, or an exception) per item.
        # None for a reattached task (Executor.reattached), whose kind is not known: a list when
        # its outcome has items.
        self._chunk = chunk
        # Guarded by _lazy_lock. Written by the reader thread; callbacks are added by any thread.
        self._progress = None
        self._progress_callbacks = None

    # --- concurrent.futures.Future, with its Condition made only when needed ---

    @property
    def _condition(self):
        condition = self._lazy_condition
        if condition is None:
            with _lazy_lock:
                if self._lazy_condition is None:
                    self._lazy_condition = threading.Condition()
                condition = self._lazy_condition
        return condition

    @property
    def _waiters(self):
        # Only under the Condition (concurrent.futures.wait and as_completed hold it).
        if self._lazy_waiters is None:
            self._lazy_waiters = []
        return self._lazy_waiters

    def __repr__(self):
        state = _base._STATE_TO_DESCRIPTION_MAP[self._state]  # pylint: disable=protected-access
        if self._state == _FINISHED:
            outcome = (f"raised {type(self._exception).__name__}" if self._exception else
                       f"returned {type(self._result).__name__}")
            return f"<{type(self).__name__} at {id(self):#x} state={state} {outcome}>"
        return f"<{type(self).__name__} at {id(self):#x} state={state}>"

    def cancelled(self):
        return self._state in (_base.CANCELLED, _CANCELLED)

    def running(self):
        return self._state == _RUNNING

    def done(self):
        return self._state in _DONE

    def add_done_callback(self, fn):
        if self._state not in _DONE:
            with self._condition:
                if self._state not in _DONE:
                    self._done_callbacks.append(fn)
                    return
        try:
            fn(self)
        except Exception:  # As concurrent.futures does.
            _LOGGER.exception("exception calling callback for %r", self)

    def result(self, timeout=None):
        if self._state not in _DONE:
            self._wait(timeout)
        if self._state == _FINISHED:
            if self._exception is not None:
                try:
                    raise self._exception
                finally:
                    self = None  # pylint: disable=self-cls-assignment
            return self._result
        raise concurrent.futures.CancelledError()

    def exception(self, timeout=None):
        if self._state not in _DONE:
            self._wait(timeout)
        if self._state == _FINISHED:
            return self._exception
        raise concurrent.futures.CancelledError()

    def _wait(self, timeout):
        """Waits until done; TimeoutError after `timeout` seconds."""
        condition = self._condition
        with condition:
            if not condition.wait_for(lambda: self._state in _DONE, timeout):
                raise concurrent.futures.TimeoutError()

    def set_running_or_notify_cancel(self):
        if self._state == _base.CANCELLED:
            self._settle(_CANCELLED)
            return False
        if self._state == _PENDING:
            self._settle(_RUNNING)
            return True
        raise RuntimeError(f"Future in unexpected state {self._state}")

    def set_result(self, result):
        if self._state in _DONE:
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
        self._result = result
        self._settle(_FINISHED)

    def set_exception(self, exception):
        if self._state in _DONE:
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
        self._exception = exception
        self._settle(_FINISHED)

    def _settle(self, state):
        """Moves to `state`, waking whoever waits, and runs the done callbacks if it is an end
        state. On the one thread that changes this future's state.

        Without a Condition nobody waits: the state is written first, and whoever makes the
        Condition after that (and then looks at the state under it) sees the new state. If the
        Condition exists once the state is written, the state is written again under it, where
        waiters look, and they are told."""
        self._state = state
        condition = self._lazy_condition
        if condition is not None:
            with condition:
                self._state = state
                if self._lazy_waiters:
                    for waiter in self._lazy_waiters:
                        if state == _FINISHED:
                            if self._exception is not None:
                                waiter.add_exception(self)
                            else:
                                waiter.add_result(self)
                        elif state == _CANCELLED:
                            waiter.add_cancelled(self)
                if state != _RUNNING or self._start_waited:
                    condition.notify_all()
        if state in _DONE:
            self._invoke_callbacks()

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
        if self._state != _PENDING:
            return True
        condition = self._condition
        with condition:
            self._start_waited = True
            return condition.wait_for(lambda: self._state != _PENDING, timeout)

    def progress(self):
        """The task's latest progress report, a Progress(fraction, message), or None if it has
        reported none (yet). Reports arrive at most every 20 ms per task; the last one before the
        task ended stays."""
        with _lazy_lock:
            return self._progress

    def add_progress_callback(self, fn):
        """Calls `fn(future, progress)` for each progress report that arrives after this call, on
        the session's reader thread (quick, never blocking, as a done callback), never once the
        future is done; added to a done future, it is never called. Callbacks run in the order
        they were added; one that raises is logged and the others still run."""
        with _lazy_lock:
            # A done future reports no more progress: keeping `fn` would only hold what it holds.
            if not self.done():
                if self._progress_callbacks is None:
                    self._progress_callbacks = []
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
        if self._state == _PENDING:
            self._settle(_RUNNING)

    def _report_progress(self, fraction, message):
        progress = Progress(fraction, message)
        with _lazy_lock:
            if self.done():
                return
            self._progress = progress
            callbacks = list(self._progress_callbacks or ())
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
        # Straight to CANCELLED_AND_NOTIFIED, which tells wait() and as_completed() waiters, as
        # an executor does for a future cancelled early.
        if self._state == _PENDING:
            self._settle(_CANCELLED)
        else:
            self.set_exception(error)
        self._ended()

    def _ended(self):
        if self._progress_callbacks is not None:
            with _lazy_lock:
                self._progress_callbacks = None
