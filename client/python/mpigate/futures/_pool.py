"""MPIPoolExecutor: mpi4py.futures' executor on an mpigate pool.

    from mpigate.futures import MPIPoolExecutor     # was: from mpi4py.futures import ...

    with MPIPoolExecutor(max_workers=4) as executor:
        print(executor.submit(pow, 2, 10).result())              # 1024
        print(list(executor.map(abs, range(-3, 3), chunksize=2)))

Each call is a task of the pool's Python runtime (`python.call`; `python.gang` with gang_size):
the function and its arguments travel pickled (mpigate._python_task), module functions by
reference and functions of __main__, lambdas and closures by value. The executor's setup
(initializer, initargs, globals, path, wdir) travels with its tasks and is applied once per
worker; env is its session's environment (OpenSession.env).

Where the pool comes from, on the executor's first use (submit, map, bootup, num_workers):
- the service the client finds (the `endpoint` argument, $MPIGATE_ENDPOINT, the endpoint file),
  shared with every other client: `max_workers` below the pool's size then caps how many of this
  executor's tasks run at once (its session's max_running; a gang larger than the cap fails), and
  num_workers is the smaller of it and the pool's size;
- with no service found, a private mpigate-server of `max_workers` workers (_private.py), stopped
  when the executor shuts down, is garbage-collected, or the process exits.
max_workers None: $MPI4PY_FUTURES_MAX_WORKERS as in mpi4py; without it, no cap on a shared pool
and the server's default size (see mpigate-server --workers) for a private one.

Threads: every method may be called from any thread (a lock guards the executor's state; the
network is never waited on under it except to start the pool). Futures end, and done callbacks
run, on the session's reader thread; callbacks must not block nor call shutdown(wait=True).
"""

import atexit
import collections
import concurrent.futures
import inspect
import itertools
import os
import threading
import time
import weakref

import mpigate
from mpigate import _endpoint
from mpigate import _executor
from mpigate import _python_task
from mpigate.futures import _future
from mpigate.futures import _private
from mpigate.v1 import task_pb2

_CALL = "python.call"
_GANG = "python.gang"

# mpi4py.futures' keywords that configure the Python processes it spawns. mpigate's workers are the
# pool's, so these have nothing to act on; they are accepted so that code written for mpi4py runs.
_SPAWN_ONLY = frozenset(("python_exe", "python_args", "mpi_info", "main", "use_pkl5", "backoff"))
# mpigate.Executor's keywords (endpoint, token, client_name, max_inflight, ...), passed through;
# env is set from the executor's own.
_SESSION_OPTIONS = frozenset(inspect.signature(_executor.Executor).parameters) - {"env"}

# The directories holding the mpigate package (the source tree and the generated mpigate.v1),
# put on the workers' path so that tasks can import mpigate.futures without PYTHONPATH.
_PACKAGE_ROOTS = tuple(os.path.dirname(path) for path in mpigate.__path__)


def _max_workers_from(max_workers):
    if max_workers is None:
        from_env = os.environ.get("MPI4PY_FUTURES_MAX_WORKERS")
        if not from_env:
            return None
        max_workers = from_env
    max_workers = int(max_workers)
    if max_workers <= 0:
        raise ValueError("max_workers must be greater than 0")
    return max_workers


class _Resources:
    """What an executor holds once it started: its mpigate.Executor (one session) and, if it
    started one, its private service. close() is what shutdown and the executor's finalizer
    do; it does not refer to the MPIPoolExecutor, so that the finalizer can run."""

    def __init__(self, executor, service):
        self.executor = executor
        self.service = service
        self._lock = threading.Lock()
        self._stopper = None  # guarded by _lock

    def close(self, wait, cancel_futures):
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            _open.discard(self)
            if self.service is not None:
                self.service.stop()
            return
        with self._lock:
            if self.service is None or self._stopper is not None:
                return
            # The service outlives the executor's last task, not this call. Not a daemon: at
            # exit the interpreter waits for the tasks, as concurrent.futures' executors do.
            self._stopper = threading.Thread(target=self.close, args=(True, False),
                                             name="mpigate-futures-stop")
            self._stopper.start()


# Every executor's resources not closed yet: closed (waiting for their tasks) at exit. Registered
# after _private's handler, so it runs first.
_open = weakref.WeakSet()


@atexit.register
def _close_all():
    for resources in list(_open):
        resources.close(True, False)


class MPIPoolExecutor(concurrent.futures.Executor):
    """Runs Python calls on an mpigate pool; see the module docstring.

    Args:
      max_workers: at most this many of the executor's tasks run at once (a private pool has
        this many workers). None: $MPI4PY_FUTURES_MAX_WORKERS, else no cap.
      initializer, initargs: initializer(*initargs) runs on each worker before the executor's
        first task there; if it raises, the executor is broken (BrokenExecutor).
      globals: a mapping (or iterable of pairs) of names the executor's functions that travel
        by value see as globals on the workers.
      path: directories prepended to sys.path for the executor's tasks.
      wdir: the working directory of the executor's tasks.
      env: environment variables (names and values, made str) of the executor's tasks.
      python_exe, python_args, mpi_info, main, use_pkl5, backoff: mpi4py's settings of the
        processes it spawns; accepted and ignored (the workers are the pool's).
      endpoint, token, client_name, connect_timeout, max_inflight, ...: as for mpigate.Executor.

    Raises ValueError for max_workers <= 0, TypeError for an initializer that is not callable or
    an unknown keyword.
    """

    def __init__(self, max_workers=None, initializer=None, initargs=(), **kwargs):
        self._max_workers_cap = _max_workers_from(max_workers)
        env = kwargs.pop("env", None)
        globals_ = kwargs.pop("globals", None)
        path = kwargs.pop("path", None)
        wdir = kwargs.pop("wdir", None)
        unknown = sorted(set(kwargs) - _SPAWN_ONLY - _SESSION_OPTIONS)
        if unknown:
            raise TypeError(f"MPIPoolExecutor got unexpected keyword(s) {', '.join(unknown)}")
        self._session_options = {k: v for k, v in kwargs.items() if k in _SESSION_OPTIONS}
        self._env = {str(name): str(value) for name, value in dict(env or {}).items()}
        self._setup = _python_task.executor_setup(
            initializer=initializer, initargs=initargs, globals=globals_,
            path=list(path or ()) + list(_PACKAGE_ROOTS), wdir=wdir)
        self._tracker = _future._Tracker()
        self._call_factory = self._tracker.factory(chunk=False)
        self._lock = threading.Lock()
        self._shutdown = False  # guarded by _lock
        self._resources = None  # guarded by _lock; set once
        self._finalizer = None  # guarded by _lock; set with _resources

    # --- Starting ---

    def _start_locked(self):
        """The session (and private service) of this executor, started on first use."""
        if self._resources is not None:
            return self._resources
        options = dict(self._session_options)
        service = None
        if not _service_reachable(options.get("endpoint")):
            service = _private.PrivateService.start(self._max_workers_cap)
            options["endpoint"] = service.target
        try:
            executor = mpigate.Executor(env=self._env, **options)
            cap = self._max_workers_cap
            if (service is None and cap is not None and
                    "max_running" not in options and cap < executor.num_workers):
                # Capped only below the pool's size: a cap counts the tasks in workers'
                # backlogs, so a cap of the pool's size would only cost short tasks their
                # prefetch. The pool's size is known once a session is open: a second one,
                # capped, replaces the first (which had no task).
                executor.shutdown(wait=True)
                executor = mpigate.Executor(env=self._env, max_running=cap, **options)
        except BaseException:
            if service is not None:
                service.stop()
            raise
        resources = _Resources(executor, service)
        self._tracker.session = executor._session
        self._resources = resources
        _open.add(resources)
        # Dropped without shutdown: its session is shut down (tasks run on) and its service
        # stopped once they have.
        # Not at exit, where _close_all waits for the tasks instead.
        self._finalizer = weakref.finalize(self, resources.close, False, False)
        self._finalizer.atexit = False
        return resources

    def _session_for_submit(self):
        resources = self._resources
        # Once started, not shut down and not broken (each set once, never undone), no lock is
        # needed to say so: a submit racing with shutdown() is one that came first.
        if resources is not None and not self._shutdown and self._tracker._broken is None:
            return resources.executor._session
        with self._lock:
            broken = self._tracker.broken
            if broken is not None:
                raise mpigate.BrokenExecutor(str(broken)) from broken
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            return self._start_locked().executor._session

    def bootup(self, wait=True):
        """Starts the executor's session (and private pool) now; with `wait`, returns once the
        pool has booted. Returns self. RuntimeError after shutdown; BrokenExecutor for a broken
        pool."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot bootup after shutdown")
            resources = self._start_locked()
        if wait:
            resources.executor.bootup(wait=True)
        return self

    @property
    def num_workers(self):
        """How many of the executor's tasks may run at once: the pool's size, capped by
        max_workers; 0 once shut down or broken. Starts the pool and waits for it to boot."""
        with self._lock:
            if self._shutdown or self._tracker.broken is not None:
                return 0
            resources = self._start_locked()
        resources.executor.bootup(wait=True)
        workers = resources.executor.num_workers
        if self._max_workers_cap is not None:
            workers = min(workers, self._max_workers_cap)
        return workers

    # As concurrent.futures' executors name it (some libraries read it).
    _max_workers = num_workers

    def status(self, timeout=10.0):
        """The pool's status now (mpigate.Executor.status(): a PoolStatus message); its
        workers_down and degraded_reason say whether workers are out of service and why, while
        num_workers stays the pool's size. Starts the pool and waits for it to boot; RuntimeError
        after shutdown."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot ask for the status after shutdown")
            resources = self._start_locked()
        resources.executor.bootup(wait=True)
        return resources.executor.status(timeout)

    # --- Submitting ---

    def submit(self, fn, /, *args, gang_size=None, **kwargs):
        """Schedules fn(*args, **kwargs); returns a concurrent.futures.Future of its value.

        gang_size=k (mpigate's own, never passed to fn) runs fn on k workers at once, where
        get_comm_workers() is a communicator of the k; the future gets rank 0's value.

        The future fails with fn's exception (its own type, with the remote traceback as its
        __cause__), with the error of an argument that cannot be pickled, with BrokenExecutor if
        the initializer failed, or with mpigate.TaskError if the task itself failed (its runner
        crashed, a timeout). Raises RuntimeError after shutdown, BrokenExecutor once broken.
        """
        spec = task_pb2.TaskSpec(function=_CALL)
        if gang_size is not None:
            if not isinstance(gang_size, int) or gang_size < 1:
                raise ValueError(f"gang_size must be an int >= 1, not {gang_size!r}")
            spec.function = _GANG
            spec.options.gang_size = gang_size
        session = self._session_for_submit()
        try:
            parts = _python_task.encode_call(self._setup, fn, args, kwargs)
        except Exception as error:  # pylint: disable=broad-except
            return self._tracker.failed(error)
        return session.submit_many([spec], parts=[parts],
                                   future_factory=self._call_factory)[0]

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None, unordered=False):
        """An iterator of fn(*args) for args from zip(*iterables), as mpi4py.futures' map.

        chunksize calls travel in one task. Without buffersize every call is submitted now;
        with it, buffersize chunks are submitted now and one more each time the caller starts
        on a chunk's results, as in Python 3.14's Executor.map (not with unordered). timeout
        counts from this call: TimeoutError when a result is not there by then. A call's
        exception is raised at its position (with unordered, as its chunk completes). When the
        iterator ends early (an exception, timeout, close or garbage collection) the tasks left
        are cancelled.
        """
        return self.starmap(fn, zip(*iterables), timeout=timeout, chunksize=chunksize,
                            buffersize=buffersize, unordered=unordered)

    def starmap(self, fn, iterable, timeout=None, chunksize=1, buffersize=None,
                unordered=False):
        """As map(), with each item of `iterable` the tuple of a call's arguments."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
            if unordered:
                raise ValueError("buffersize must be None if unordered")
        end_time = None if timeout is None else time.monotonic() + timeout
        session = self._session_for_submit()
        chunks = _chunks(iterable, chunksize)
        first = chunks if buffersize is None else itertools.islice(chunks, buffersize)
        submit = _ChunkSubmitter(session, self._tracker, self._setup, fn)
        futures = collections.deque(submit(list(first)))
        more = None if buffersize is None else (lambda: submit(list(itertools.islice(chunks, 1))))
        return _results(session, futures, more, end_time, unordered)

    # --- Ending ---

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stops accepting calls (later submits raise RuntimeError). With cancel_futures, the
        calls not started yet are cancelled; with wait, returns once every call has ended and
        the private pool, if any, has stopped. Safe to call more than once."""
        with self._lock:
            self._shutdown = True
            resources, finalizer = self._resources, self._finalizer
        if resources is not None:
            # Closed here: the finalizer would only start a thread to close it again.
            finalizer.detach()
            resources.close(wait, cancel_futures)


def _service_reachable(endpoint):
    """Whether to use a running service: an explicit endpoint or $MPIGATE_ENDPOINT always (its
    errors are the user's to see); the endpoint file if it names a socket that exists or a TCP
    address. False: start a private one."""
    if endpoint or os.environ.get("MPIGATE_ENDPOINT"):
        return True
    try:
        target = _endpoint.resolve_endpoint()
    except ConnectionError:
        return False
    # A killed server leaves its endpoint file behind, but not its socket.
    return not target.startswith("unix:") or os.path.exists(target[len("unix:"):])


def _chunks(iterable, chunksize):
    """Lists of up to chunksize argument tuples, lazily."""
    iterator = iter(iterable)
    while True:
        chunk = list(itertools.islice(iterator, chunksize))
        if not chunk:
            return
        yield chunk


class _ChunkSubmitter:
    """Submits map chunks (encode_chunk payloads) of one map call in one batch per call."""

    def __init__(self, session, tracker, setup, fn):
        self._session = session
        self._tracker = tracker
        self._setup = setup
        self._fn = fn
        self._factory = tracker.factory(chunk=True)

    def __call__(self, chunks):
        """The futures of `chunks`, in order; a chunk that cannot be encoded fails alone."""
        futures = [None] * len(chunks)
        specs, parts, slots = [], [], []
        for index, chunk in enumerate(chunks):
            try:
                parts.append(_python_task.encode_chunk(self._setup, self._fn, chunk))
            except Exception as error:  # pylint: disable=broad-except
                futures[index] = self._tracker.failed(error, chunk=True)
                continue
            specs.append(task_pb2.TaskSpec(function=_CALL))
            slots.append(index)
        if specs:
            submitted = self._session.submit_many(specs, parts=parts,
                                                  future_factory=self._factory)
            for index, future in zip(slots, submitted):
                futures[index] = future
        return futures


def _results(session, futures, more, end_time, unordered):
    """map's iterator over the chunk futures `futures` (a deque, in input order); `more()`
    submits the next chunk (a list of at most one future) as one is consumed, if given."""
    if unordered:
        futures = set(futures)
    try:
        if unordered:
            remaining = _executor._remaining(end_time)
            for future in concurrent.futures.as_completed(futures, remaining):
                futures.discard(future)
                yield from _values(future.result())
        else:
            while futures:
                # As Python 3.14's Executor.map: the next chunk goes out as this one's results
                # are taken, so that workers have it while the caller waits or consumes.
                if more is not None:
                    futures.extend(more())
                outcome = futures[0].result(_executor._remaining(end_time))
                futures.popleft()
                yield from _values(outcome)
    finally:
        session.cancel([f.task_id for f in futures if f.task_id and not f.done()], wait=False)


def _values(outcome):
    values, error = outcome
    yield from values
    if error is not None:
        raise error


