"""The futures of one MPIPoolExecutor's Python calls, and what the executor's futures share.

A task of `python.call` or `python.gang` comes back as an encoded outcome (mpigate._python_task):
the call's value, or the exception it raised. _CallFuture decodes it as the task ends, so that
result() returns the value and exception() the remote exception (its own type and args, with the
remote traceback as __cause__). The future of a map chunk ends with (values, exception or None):
the values of the items before the first one that raised, and that item's exception.

_Tracker holds what the futures of one executor share: the set of its futures that have not
ended, and whether the executor is broken. When a task's outcome says that the executor's setup
(its initializer) failed on a worker, the executor is broken as in mpi4py.futures: that future and
every other unfinished one end with the ExecutorSetupError (a concurrent.futures.BrokenExecutor),
their tasks still queued are cancelled at the service, and later submits raise BrokenExecutor.
Other executors have trackers (and sessions) of their own and are untouched.

Threads: futures are made on caller threads (in Session.submit_many, or by _Tracker.failed for a
call that could not be encoded) and end on the session's reader thread, as mpigate.Future's do;
_Tracker's state is guarded by its lock. An outcome or a cancel answer that comes for a future
that has already ended (a broken executor failed it first) is ignored.
"""

import threading

from mpigate import _future
from mpigate import _python_task


class _Tracker:
    """The unfinished futures and the broken state of one executor. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._unfinished = set()  # guarded by _lock
        self._broken = None  # guarded by _lock: the ExecutorSetupError that broke the executor
        self.session = None  # set once, before any future is made

    @property
    def broken(self):
        """The ExecutorSetupError that broke the executor, or None."""
        with self._lock:
            return self._broken

    def factory(self, chunk):
        """A future_factory for Session.submit_many: futures of calls, or with `chunk` of map
        chunks (encode_chunk payloads, which the session sees as plain tasks)."""
        def make(session, task_id, _items):
            return _CallFuture(self, session, task_id, chunk)
        return make

    def failed(self, exception, chunk=False):
        """A future that never reached the service, ended with `exception` (e.g. the pickling
        error of an argument)."""
        future = _CallFuture(self, None, 0, chunk)
        future._end(exception=exception)
        return future

    def _add(self, future):
        with self._lock:
            self._unfinished.add(future)

    def _discard(self, future):
        with self._lock:
            self._unfinished.discard(future)

    def _break(self, error):
        """On the reader thread: the executor is broken by `error`; ends every unfinished
        future with it and cancels their tasks still queued."""
        with self._lock:
            if self._broken is None:
                self._broken = error
            victims = list(self._unfinished)
            self._unfinished.clear()
        if self.session is not None:
            self.session.cancel([f.task_id for f in victims if f.task_id], wait=False)
        for future in victims:
            future._end(exception=error)


class _CallFuture(_future.Future):
    """The future of one Python call (or map chunk) of an MPIPoolExecutor."""

    def __init__(self, tracker, session, task_id, chunk):
        super().__init__(session, task_id)
        self._tracker = tracker
        self._is_chunk = chunk
        tracker._add(self)

    # The session's side (reader thread). Each is a no-op once the future has ended.

    def _mark_running(self):
        if not self.done():
            super()._mark_running()

    def _mark_cancelled(self, error):
        if not self.done():
            self._tracker._discard(self)
            super()._mark_cancelled(error)

    def _finish(self, result=None, exception=None):
        if self.done():
            return
        if exception is None:
            try:
                if self._is_chunk:
                    result = _python_task.decode_chunk_outcome(result)
                    if isinstance(result[1], _python_task.ExecutorSetupError):
                        self._tracker._break(result[1])
                        return
                else:
                    result = _python_task.decode_outcome(result)
            except _python_task.ExecutorSetupError as error:
                self._tracker._break(error)
                return
            except BaseException as error:  # pylint: disable=broad-except
                # The call's own exception, or one its value raised as it was unpickled.
                exception = error
        self._end(result, exception)

    def _end(self, result=None, exception=None):
        self._tracker._discard(self)
        if not self.done():
            super()._finish(result, exception)
