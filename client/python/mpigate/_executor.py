"""mpigate.Executor: submit tasks to a running mpigate service, with concurrent.futures semantics.

    with mpigate.Executor() as executor:           # finds the service as the C++ client does
        future = executor.submit("echo", b"hello")  # a concurrent.futures.Future
        future.result()                             # b"hello"
        for result in executor.map("echo", [b"a", b"b"], chunksize=64):
            ...

Functions are named (registered on the workers: built-ins such as echo and sleep, or a task
library's); payloads and results are bytes. One Executor is one session of the service over one
gRPC stream; executors in one process or many share the pool fairly. Where the service runs on
this host as this user, payloads and results of 64 KiB or more skip the stream through shared
memory (see shared_memory_min_bytes): such a result is a memoryview rather than bytes.

Thread-safety: every method may be called from any thread, and any number of threads may submit
through one Executor at once: their submissions are batched onto the stream. Futures complete, and
their done callbacks run, on the executor's reader thread; callbacks must not block, and must not
call shutdown(wait=True).

A session survives a dropped connection: when its stream breaks, the executor resumes the session
on a new connection, for as long as the service keeps it (its grace period, mpigate-server
--resume-grace-s): nothing is lost or run twice, and every future completes exactly once. Only if
resuming fails do unfinished futures fail with ConnectionLost. A process that died can be
followed by one that resumes its session (Executor(resume_token=...)) and collects the results it
never read (reattached).

An outcome counts as read once its future is complete and its done callbacks have run: the
executor then acknowledges it to the service, which forgets it. A program that must not lose
results if it dies records them in done callbacks, and passes the ids it recorded to the executor
that resumes its session (acked_task_ids).

Use an Executor as a context manager, or call shutdown(): one dropped without it leaves its
session to the service, which cancels the session's queued tasks once its resume grace period has
passed.
"""

import concurrent.futures
import math
import time

from mpigate import _endpoint
from mpigate import _session
from mpigate import _shared_memory
from mpigate import _status
from mpigate.v1 import task_pb2

# The largest message this client sends or accepts, as the C++ client's default; the service's own
# limit (mpigate-server --max-message-mb) also applies.
_MAX_MESSAGE_BYTES = 512 << 20

_OPTIONS = ("queue_timeout", "run_timeout", "max_retries", "gang_size", "payload_type")


class Executor(concurrent.futures.Executor):
    """A session of an mpigate service; see the module docstring.

    Args:
      endpoint: a gRPC target such as "unix:/tmp/mpigate-0/gateway.sock" or "node12:50051".
        None: $MPIGATE_ENDPOINT, else the endpoint file ($MPIGATE_ENDPOINT_FILE, else
        $MPIGATE_RUN_DIR/endpoint, else /tmp/mpigate-<uid>/endpoint).
      max_inflight: the most tasks of this executor that may be unfinished at once; submit() and
        map() block until there is room (except in a done callback). None: no limit.
      client_name: a label for the session in the service's status output.
      connect_timeout: seconds to wait for the service to answer.
      max_message_bytes: the largest message sent or accepted; a task above it fails alone with
        RESOURCE_EXHAUSTED.
      token: the bearer token a service on TCP requires, sent with every call (in clear text
        unless over TLS). None: $MPIGATE_TOKEN, else the endpoint file's when the endpoint came
        from it.
      tls_ca: the CA certificate that signed the service's (mpigate-server --tls-cert), PEM text
        or a file's path; given, the client speaks TLS. None: $MPIGATE_TLS_CA; if neither, TLS
        only when the endpoint file says so, verified against the system's roots.
      tls_cert, tls_key: a client certificate and its key (PEM text or paths) for a service that
        requires one (--tls-client-ca). None: $MPIGATE_TLS_CERT and $MPIGATE_TLS_KEY.
      env: environment variables (a dict of str to str) for this executor's tasks: each starts
        with the pool's environment plus these, and no task sees what a task of another executor
        set. Names without '=' or NUL, at most 64 KiB in all; a pool with --isolation=none refuses
        them. None: the pool's environment. Ignored when resuming: a session keeps its own.
      resume_token: resume the session of an executor that is gone (typically in a process that
        died) instead of opening a new one: that executor's resume_token (bytes). Its unfinished
        tasks' futures are then in reattached. ConnectionError if the service no longer has the
        session (it closed, or its grace period passed); while the service has not yet noticed
        that the earlier connection is gone, it is tried again within connect_timeout.
      acked_task_ids: with resume_token, the ids of the session's tasks whose outcomes the
        application already has (e.g. recorded by the earlier process in done callbacks): the
        service forgets them instead of sending them again, and reattached leaves them out.
      shared_memory_min_bytes: payloads and results of at least this many bytes skip the stream
        and travel in shared memory objects (/dev/shm, mode 0600) where the service runs on this
        host as this user (it says so when the session opens; $MPIGATE_SHARED_MEMORY=off keeps
        this process off it); elsewhere they go in the messages as any other. 0: never. Such a
        result is a memoryview of the object, not bytes: no copy (bytes(result) makes one).
      max_running: the most of this executor's tasks on workers at once, as mpi4py.futures'
        max_workers on a shared pool: the rest wait in its queue while other clients' tasks use
        the free workers. A task counts while it runs or waits in a worker's backlog, a gang once
        per member; a broadcast does not count. A gang larger than it fails with TaskError
        (INVALID_ARGUMENT). Prefetched tasks count, so a cap also bounds prefetch: a cap of the
        pool's size leaves each worker one task at a time, which costs tasks of well under a
        millisecond most of their throughput. None: no cap.

    Raises ConnectionError if no endpoint is known or the service does not answer in time (a TLS
    handshake that fails, for an untrusted certificate, is a service that does not answer),
    ValueError for a client certificate without its key, FileNotFoundError for a missing PEM
    file.
    """

    def __init__(self, endpoint=None, *, max_inflight=None, client_name="", connect_timeout=10.0,
                 max_message_bytes=_MAX_MESSAGE_BYTES, token=None, tls_ca=None, tls_cert=None,
                 tls_key=None, env=None, resume_token=None, acked_task_ids=(),
                 shared_memory_min_bytes=_shared_memory.DEFAULT_MIN_BYTES, max_running=None):
        if max_inflight is not None and max_inflight < 1:
            raise ValueError("max_inflight must be at least 1, or None")
        if resume_token is not None and not isinstance(resume_token, (bytes, bytearray)):
            raise TypeError(f"resume_token is bytes (an Executor's resume_token), not "
                            f"{type(resume_token).__name__}")
        if acked_task_ids and not resume_token:
            raise ValueError("acked_task_ids are for resuming a session: give its resume_token")
        access = _endpoint.resolve_access(endpoint, token, tls_ca, tls_cert, tls_key)
        self._access = access
        self._session = _session.Session(access, client_name, connect_timeout, max_message_bytes,
                                         max_inflight, dict(env or {}), resume_token or b"",
                                         [int(task_id) for task_id in acked_task_ids],
                                         shared_memory_min_bytes=shared_memory_min_bytes,
                                         max_running=max_running)

    @property
    def endpoint(self):
        """The gRPC target of the service."""
        return self._session.target

    @property
    def num_workers(self):
        """The number of workers in the pool (as mpi4py's MPIPoolExecutor.num_workers)."""
        return self._session.workers

    def status(self, timeout=10.0):
        """The pool's status now: a PoolStatus message (proto/mpigate/v1/gateway.proto), asked of
        the service on a connection of its own (GetPoolStatus). Besides the size and load it says
        whether the pool is degraded: workers_down (workers out of service: their process was
        lost and is not replaced yet) and degraded_reason (why; empty while the pool is whole).
        num_workers stays the pool's size meanwhile. Raises ConnectionError if the service
        cannot be asked within `timeout` seconds."""
        return _status.pool_status(self._access, timeout)

    @property
    def pool_state(self):
        """The pool's state as the service last said: "BOOTING", "READY", "BROKEN" or
        "DRAINING"."""
        return self._session.pool_state

    @property
    def resume_token(self):
        """The secret (bytes) that resumes this executor's session from another executor,
        typically in a new process after this one died (Executor(resume_token=...)). Whoever
        holds it can read the session's results: keep it as private as they are. (A service
        started with --resume-grace-s=0 ends a session with its stream: nothing to resume.)"""
        return self._session.resume_token

    @property
    def reattached(self):
        """For an executor that resumed a session (resume_token): futures of the tasks the
        earlier executor submitted whose outcomes were not read (acknowledged) or listed in
        acked_task_ids, in task id order (their task_id is the earlier executor's). Whether
        queued, running or ended meanwhile, each completes as submit()'s futures do: its result
        is the result bytes, or for a map's chunk the list of its items' results (bytes, or an
        item's exception). Empty otherwise."""
        return self._session.reattached

    def bootup(self, wait=True):
        """Waits (with `wait`) until the pool has booted and returns self, as mpi4py's bootup.

        Raises BrokenExecutor if a worker initializer failed, RuntimeError if the service drains
        or after shutdown, ConnectionLost if the session's stream broke.
        """
        self._session.bootup(wait)
        return self

    def submit(self, function, payload=b"", /, **options):
        """Submits `function(payload)`; returns an mpigate.Future (a concurrent.futures.Future)
        whose result is the function's result bytes (a memoryview of them if they came through
        shared memory). Never waits on the network; a large payload is first written into
        shared memory.

        Options: queue_timeout and run_timeout (seconds: fail with DEADLINE_EXCEEDED if no worker
        took the task in time, or if it runs longer), max_retries (runs after its process dies
        under it), gang_size (for gang functions), payload_type (the full name of the Protobuf
        message in the payload, checked against the function's).

        The future fails with TaskError (the function's error, or a rejection such as NOT_FOUND
        for an unknown function), BrokenExecutor, or ConnectionLost. Raises RuntimeError after
        shutdown, and BrokenExecutor or ConnectionLost when the executor can take no task.
        """
        spec = _task_spec(function, options)
        _check_bytes_like(payload)
        return self._session.submit_many([spec], parts=[[payload]])[0]

    def map(self, function, iterable, *, timeout=None, chunksize=1, unordered=False, **options):
        """Runs `function` on every payload of `iterable`; returns an iterator of result bytes.

        As in concurrent.futures, every payload is submitted at once, and the iterator raises
        TimeoutError if a result is not there `timeout` seconds after this call, and raises an
        item's error at its position; either way the chunks not yet started are then cancelled,
        as they are when the iterator is closed or dropped. As in mpi4py.futures, `chunksize`
        payloads travel in one task (TaskSpec.items) and the worker runs the function on each, and
        with `unordered` results come as chunks complete (a chunk's items in order) rather than in
        input order. Options as for submit(), for each chunk.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        end_time = None if timeout is None else time.monotonic() + timeout
        payloads = [_as_bytes(payload) for payload in iterable]
        specs = []
        for first in range(0, len(payloads), chunksize):
            spec = _task_spec(function, options)
            spec.items.extend(payloads[first:first + chunksize])
            specs.append(spec)
        futures = self._session.submit_many(specs, chunk=True)
        return _map_results(self._session, futures, end_time, unordered)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stops accepting tasks: later submits raise RuntimeError. With `cancel_futures`, the
        tasks still queued are cancelled by the time this returns (their futures CANCELLED); with
        `wait`, returns once every task has ended and the session is closed. Safe to call twice."""
        self._session.shutdown(wait, cancel_futures)


def _task_spec(function, options):
    """A TaskSpec for `function` with `options` (submit's keywords) applied."""
    if not isinstance(function, str):
        raise TypeError(f"function must be a registered function's name (str), not "
                        f"{type(function).__name__}")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    spec = task_pb2.TaskSpec(function=function, payload_type=options.get("payload_type") or "")
    if options.get("queue_timeout") is not None:
        spec.options.queue_timeout_ms = _milliseconds(options["queue_timeout"])
    if options.get("run_timeout") is not None:
        spec.options.run_timeout_ms = _milliseconds(options["run_timeout"])
    if options.get("max_retries"):
        spec.options.max_retries = options["max_retries"]
    if options.get("gang_size"):
        spec.options.gang_size = options["gang_size"]
    return spec


def _milliseconds(seconds):
    """Whole milliseconds, rounded up; 0 on the wire means no limit, so at least 1."""
    return max(1, math.ceil(seconds * 1000))


def _check_bytes_like(payload):
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payloads are bytes, not {type(payload).__name__} (encode it first)")


def _as_bytes(payload):
    _check_bytes_like(payload)
    return bytes(payload)


def _map_results(session, futures, end_time, unordered):
    """The results of map's chunk futures, item by item; cancels the chunks left when it ends."""
    # The chunks whose results are still to come: a set when they come as they complete, else a
    # stack in input order.
    waiting = set(futures) if unordered else futures[::-1]
    try:
        if unordered:
            for future in concurrent.futures.as_completed(futures, _remaining(end_time)):
                waiting.remove(future)
                yield from _items(future.result())
        else:
            while waiting:
                items = waiting[-1].result(_remaining(end_time))
                waiting.pop()
                yield from _items(items)
    finally:
        session.cancel([future.task_id for future in waiting if not future.done()], wait=False)


def _remaining(end_time):
    return None if end_time is None else end_time - time.monotonic()


def _items(results):
    for result in results:
        if isinstance(result, BaseException):
            raise result
        yield result
