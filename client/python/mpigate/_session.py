"""Session: one Session stream of the mpigate service, shared by every thread of one Executor.

It speaks the protocol of proto/mpigate/v1/gateway.proto as the C++ client does
(client/internal/session.h): `open`, then batches of `submit`, `cancel`, one `shutdown` and `ack`s;
it reads `opened`, `updates`, `rejected`, `cancel_results`, `pool` and finally `closed`. Unlike the
C++ client it does not resume a session whose stream broke: the session's futures then fail with
ConnectionLost. Payloads and results always travel in the messages (no shared memory).

Threads:
- Caller threads, any number, call submit_many(), cancel(), shutdown() and bootup(): they queue
  work under the lock and wake the writer, or wait on a condition. Nothing they do blocks on the
  network, except waiting for the answer to a cancel and for the session to close.
- gRPC's request-consumer thread runs _requests(), the writer: the stream's request iterator. It
  waits for work, takes everything queued at once and yields it as few messages: one SubmitTasks
  per few MiB of specs, then the cancels, the shutdown and the acknowledgements.
- The reader thread runs _read(): it reads events, marks futures running, completes them (running
  their done callbacks) outside the lock, and queues acknowledgements of the outcomes it handled.
  When the stream ends it fails whatever is still pending and releases every cancel waiter.

Invariants:
- A future is in _pending from before its spec can be sent until its task has ended, so an outcome
  that arrives before submit_many() returns still finds it. Futures change state only on the reader
  thread (a task too large to send fails before it has one).
- Task ids are taken under the lock as specs are queued, so they increase in sending order.
- A cancel request moves to _cancels_sent before it is written; the service answers cancels in the
  order it got them, so the reader pairs each answer with the oldest request.
- Once _ended is set, nothing is added to _pending or to the cancel lists.
"""

import collections
import threading
import time

import grpc

from mpigate import _errors
from mpigate import _future
from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from mpigate.v1 import task_pb2

# A burst of submissions goes out in messages of about this much task data; a larger task alone.
_BATCH_BYTES = 4 << 20
# What a SessionRequest adds around its SubmitTasks, and a SubmitTasks around each TaskSpec, and
# a task id to a spec measured before it has one: generous upper bounds (tags and varints).
_REQUEST_OVERHEAD = 16
_PER_TASK_OVERHEAD = 1 + 10
_TASK_ID_BYTES = 1 + 10
# Acknowledgements go out once this many outcomes wait, or they hold this many bytes on the
# service, or the oldest has waited this long (or with anything else the writer sends): never one
# message per task.
_ACK_BATCH = 4096
_ACK_BYTES = 4 << 20
_ACK_DELAY_S = 0.02
# After `closed`, how long shutdown waits for the service to end the stream before cancelling it.
_CLOSE_GRACE_S = 5.0

_POOL_STATE_PREFIX = "POOL_STATE_"


class _CancelRequest:
    """One `cancel` message; `answered` is set once the service answered or the stream ended."""

    __slots__ = ("task_ids", "answered")

    def __init__(self, task_ids):
        self.task_ids = task_ids
        self.answered = threading.Event()


class Session:
    """One session of the service over one stream. See the module docstring for its threads."""

    def __init__(self, access, client_name, connect_timeout, max_message_bytes, max_inflight,
                 env, *, max_running=None):
        """Connects to the service `access` (an _endpoint.Access) names and opens the session;
        raises ConnectionError if the service does not answer within `connect_timeout` seconds.
        `max_running` caps how many of the session's tasks are on workers at once
        (OpenSession.max_running_tasks); None for no cap. Called by the Executor's constructor."""
        if max_running is not None and not (
                isinstance(max_running, int) and 1 <= max_running < 1 << 32):
            raise ValueError(f"max_running must be an int from 1 to 2**32 - 1, or None, not "
                             f"{max_running!r}")
        target = access.target
        self._target = target
        self._max_inflight = max_inflight
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if access.tls:
            credentials = grpc.ssl_channel_credentials(
                access.root_certificates, access.private_key, access.certificate_chain)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._lock = threading.Lock()
        # The writer waits on this for work; callers and the reader notify it.
        self._writer_wake = threading.Condition(self._lock)
        # Waiters for the session's state (pool state, closed, ended, room under max_inflight).
        self._changed = threading.Condition(self._lock)
        # Protected by _lock:
        self._next_task_id = 1
        self._pending = {}  # task id -> Future, for tasks that have not ended
        self._outgoing = []  # (TaskSpec, encoded size) not yet taken by the writer
        self._cancels_queued = []  # _CancelRequest not yet taken by the writer
        self._cancels_sent = collections.deque()  # written, not yet answered
        self._acks = []  # ids of outcomes handled and not yet acknowledged
        self._ack_bytes = 0
        self._ack_due = None  # monotonic time by which _acks go out
        self._shutdown_requested = False
        self._shutdown_sent = False
        self._opened = False
        self._send_limit = max_message_bytes
        self._session_id = 0
        self._workers = 0
        self._pool_state = "READY"
        self._pool_reason = ""
        self._closed = False  # the service sent `closed`
        self._ended = False  # the stream is over
        self._end_error = None  # ConnectionLost once _ended, for later submits

        self._end_reason = ""  # why the stream ended, once _ended

        # Set by the reader once `opened` came, or the stream ended.
        self._open_answered = threading.Event()
        open_request = gateway_pb2.SessionRequest(open=gateway_pb2.OpenSession(
            client_name=client_name, max_message_bytes=max_message_bytes, env=env,
            max_running_tasks=max_running or 0))
        stub = gateway_pb2_grpc.GatewayStub(self._channel)
        # The bearer token of a service on TCP (common/access.h), on the call's metadata.
        metadata = [("authorization", f"Bearer {access.token}")] if access.token else None
        # wait_for_ready: a service still starting gets until connect_timeout to answer, as the
        # wait for `opened` below counts it. Not grpc.channel_ready_future, whose connectivity
        # watch thread makes the channel's close() wait up to 0.2 s for its next poll: that was
        # most of what shutdown() took.
        self._call = stub.Session(self._requests(open_request), metadata=metadata,
                                  wait_for_ready=True)
        self._reader = threading.Thread(target=self._read, name="mpigate-reader", daemon=True)
        self._reader.start()
        # A service that accepts the connection but never answers `open` must not hang us.
        answered = self._open_answered.wait(connect_timeout)
        if not answered:
            self._call.cancel()
            self._open_answered.wait()
        with self._lock:
            opened, reason = self._opened, self._end_reason
        if not answered:
            self._reader.join()
            raise ConnectionError(
                f"the mpigate service at {target} did not answer within {connect_timeout} s; "
                "is it running?" + (" Over TLS, a certificate that is not trusted fails the "
                                   "handshake the same way." if access.tls else ""))
        if not opened:
            self._reader.join()
            raise ConnectionError(
                f"the mpigate service at {target} did not open a session: {reason}")

    # --- Callers' side ---

    @property
    def target(self):
        return self._target

    @property
    def session_id(self):
        with self._lock:
            return self._session_id

    @property
    def workers(self):
        with self._lock:
            return self._workers

    @property
    def pool_state(self):
        with self._lock:
            return self._pool_state

    def submit_many(self, specs, chunk=False, parts=None, future_factory=_future.Future):
        """Queues `specs` (TaskSpecs without ids) in order; returns their futures.

        With `chunk`, each future's result is a list with one entry per item: bytes, or the
        item's exception. `parts`, if given, holds one entry per spec: None, or a list of
        bytes-like objects whose concatenation is that spec's payload (pickle-5 frames and their
        out-of-band buffers), for the session to join or to place in shared memory without
        joining. `future_factory(session, task_id, chunk)` makes each future (a subclass of
        _future.Future). Raises RuntimeError after shutdown, BrokenExecutor when the pool is
        broken, ConnectionLost when the session is over. Blocks while max_inflight tasks are
        unfinished, except on the reader thread (in a done callback), which must not wait.
        """
        if parts is not None:
            for spec, spec_parts in zip(specs, parts):
                if spec_parts is not None:
                    spec.payload = b"".join(spec_parts)
        sized = [(spec, spec.ByteSize() + _TASK_ID_BYTES + _PER_TASK_OVERHEAD) for spec in specs]
        may_wait = threading.current_thread() is not self._reader
        futures = []
        with self._lock:
            self._check_open_locked()
            for spec, wire_bytes in sized:
                if may_wait and not self._has_room_locked():
                    # What this call queued so far must go out for room to be made.
                    self._writer_wake.notify()
                    self._changed.wait_for(self._has_room_locked)
                self._check_open_locked()
                futures.append(self._enqueue_locked(spec, wire_bytes, chunk, future_factory))
            self._writer_wake.notify()
        return futures

    def cancel(self, task_ids, wait):
        """Asks the service to cancel those of `task_ids` that are still queued. With `wait`,
        blocks until the answer is in and the cancelled futures are CANCELLED (never on the reader
        thread, which delivers the answer)."""
        if not task_ids:
            return
        request = _CancelRequest(list(task_ids))
        with self._lock:
            # After `closed`, or once the stream is over, no task of this session is pending.
            if self._closed or self._ended:
                return
            self._cancels_queued.append(request)
            self._writer_wake.notify()
        if wait and threading.current_thread() is not self._reader:
            request.answered.wait()

    def shutdown(self, wait, cancel_futures):
        """Stops the session accepting tasks (later submits raise RuntimeError); with
        `cancel_futures`, cancels every task still queued before returning; with `wait`, returns
        once every task has ended and the stream is over. Safe to call more than once."""
        with self._lock:
            self._shutdown_requested = True
            unfinished = list(self._pending) if cancel_futures else []
            self._writer_wake.notify()
            self._changed.notify_all()  # submitters waiting for room raise now
        # An explicit cancel rather than shutdown{cancel_pending}: its answer says when the
        # futures are cancelled, and it still works after an earlier shutdown. The service skips
        # the tasks that have started.
        self.cancel(unfinished, wait=True)
        if not wait:
            return
        if threading.current_thread() is self._reader:
            raise RuntimeError("shutdown(wait=True) cannot be called from a done callback: the "
                               "callback runs on the thread that completes the futures")
        with self._lock:
            self._changed.wait_for(lambda: self._closed or self._ended)
            # After `closed` the service ends the stream; should it not, nothing is lost.
            if not self._changed.wait_for(lambda: self._ended, _CLOSE_GRACE_S):
                self._call.cancel()
        self._reader.join()

    def bootup(self, wait):
        """Raises BrokenExecutor if the pool is broken, RuntimeError if it drains or after
        shutdown, ConnectionLost if the session is over; with `wait`, first waits until the pool
        is no longer booting."""
        with self._lock:
            if self._shutdown_requested:
                raise RuntimeError("cannot bootup after shutdown")
            if wait:
                self._changed.wait_for(lambda: self._pool_state != "BOOTING" or self._ended)
            state, reason, error = self._pool_state, self._pool_reason, self._end_error
        if state == "BROKEN":
            # The service's own words for a task of a broken pool.
            raise _errors.BrokenExecutor(f"BrokenExecutor: {reason}")
        if state == "DRAINING":
            raise RuntimeError(f"the mpigate service is draining: {reason}")
        if error is not None:
            raise error

    def _has_room_locked(self):
        return (self._max_inflight is None or len(self._pending) < self._max_inflight or
                self._shutdown_requested or self._ended)

    def _check_open_locked(self):
        if self._shutdown_requested:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._ended:
            raise self._end_error
        if self._pool_state == "BROKEN":
            raise _errors.BrokenExecutor(f"BrokenExecutor: {self._pool_reason}")

    def _enqueue_locked(self, spec, wire_bytes, chunk, future_factory):
        # gRPC would fail the whole stream on an oversized message, taking every other task with
        # it: this task alone fails, and the service never hears of it.
        if wire_bytes + _REQUEST_OVERHEAD > self._send_limit:
            future = future_factory(None, 0, chunk)
            future._finish(exception=_errors.TaskError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the task is {wire_bytes} bytes encoded, above the message limit of "
                f"{self._send_limit} bytes (the smaller of max_message_bytes and the service's "
                "--max-message-mb)"))
            return future
        task_id = self._next_task_id
        self._next_task_id += 1
        spec.task_id = task_id
        future = future_factory(self, task_id, chunk)
        # Registered before the writer can see the spec: the outcome may come before we return.
        self._pending[task_id] = future
        self._outgoing.append((spec, wire_bytes))
        return future

    # --- The writer: gRPC's request-consumer thread ---

    def _requests(self, open_request):
        """The stream's requests: `open`, then whatever callers and the reader queue, until the
        session is closed or over."""
        yield open_request
        while True:
            with self._lock:
                while not (self._ended or self._closed or self._sendable_locked()):
                    timeout = None
                    if self._acks:
                        timeout = self._ack_due - time.monotonic()
                        if timeout <= 0:
                            break
                    self._writer_wake.wait(timeout)
                if self._ended or self._closed:
                    return
                specs, self._outgoing = self._outgoing, []
                cancels, self._cancels_queued = self._cancels_queued, []
                # Before the write, so that the answer, however quick, finds its request.
                self._cancels_sent.extend(cancels)
                send_shutdown = self._shutdown_requested and not self._shutdown_sent
                self._shutdown_sent = self._shutdown_sent or send_shutdown
                acks, self._acks = self._acks, []
                self._ack_bytes = 0
                self._ack_due = None
                budget = min(_BATCH_BYTES, self._send_limit - _REQUEST_OVERHEAD)
            # Specs first: every cancel and the shutdown came after the tasks they concern.
            yield from _submit_requests(specs, budget)
            for cancel in cancels:
                yield gateway_pb2.SessionRequest(
                    cancel=gateway_pb2.CancelTasks(task_ids=cancel.task_ids))
            if send_shutdown:
                yield gateway_pb2.SessionRequest(shutdown=gateway_pb2.ShutdownSession())
            if acks:
                yield gateway_pb2.SessionRequest(ack=gateway_pb2.AckOutcomes(task_ids=acks))

    def _sendable_locked(self):
        return bool(self._outgoing or self._cancels_queued or
                    (self._shutdown_requested and not self._shutdown_sent) or
                    len(self._acks) >= _ACK_BATCH or self._ack_bytes >= _ACK_BYTES)

    # --- The reader thread ---

    def _read(self):
        error = None
        try:
            for event in self._call:
                self._handle(event)
        except grpc.RpcError as rpc_error:
            error = f"{rpc_error.code().name}: {rpc_error.details()}"
        except Exception as bug:  # A bug of ours must not leave futures waiting forever.
            error = f"the client failed to handle an event: {bug!r}"
            self._call.cancel()
        self._end(error)

    def _handle(self, event):
        kind = event.WhichOneof("event")
        if kind == "updates":
            self._handle_updates(event.updates)
        elif kind == "rejected":
            self._handle_rejected(event.rejected)
        elif kind == "cancel_results":
            self._handle_cancel_results(event.cancel_results)
        elif kind == "pool":
            with self._lock:
                self._set_pool_locked(event.pool)
        elif kind == "opened":
            self._handle_opened(event.opened)
        elif kind == "closed":
            with self._lock:
                self._closed = True
                self._writer_wake.notify()
                self._changed.notify_all()
        # Anything else is a newer service's event: nothing we need.

    def _handle_opened(self, opened):
        with self._lock:
            self._opened = True
            self._session_id = opened.session_id
            self._workers = opened.workers
            if opened.max_message_bytes:
                self._send_limit = min(self._send_limit, opened.max_message_bytes)
            if opened.HasField("pool"):
                self._set_pool_locked(opened.pool)
        self._open_answered.set()

    def _set_pool_locked(self, change):
        try:
            name = gateway_pb2.PoolState.Name(change.state)
        except ValueError:
            return  # A newer service's state: nothing we can act on.
        if change.state == gateway_pb2.POOL_STATE_UNSPECIFIED:
            return
        self._pool_state = name[len(_POOL_STATE_PREFIX):]
        self._pool_reason = change.reason
        if change.workers:
            self._workers = change.workers
        self._changed.notify_all()

    def _handle_updates(self, updates):
        handled = []
        handled_bytes = 0
        with self._lock:
            started = [self._pending[i] for i in updates.started if i in self._pending]
            finished = []
            for outcome in updates.outcomes:
                # Acknowledged also when it finds no future (its cancel was answered first): the
                # service holds every outcome until then.
                handled.append(outcome.task_id)
                handled_bytes += outcome.ByteSize()
                future = self._pending.pop(outcome.task_id, None)
                if future is not None:
                    finished.append((future, outcome))
        # Starts first: a task's start comes no later than its outcome.
        for future in started:
            future._mark_running()
        for future, outcome in finished:
            _complete(future, outcome)
        with self._lock:
            if finished:
                self._changed.notify_all()  # room under max_inflight
            if not handled:
                return
            if not self._acks:
                self._ack_due = time.monotonic() + _ACK_DELAY_S
                self._writer_wake.notify()  # it now waits until then
            self._acks.extend(handled)
            self._ack_bytes += handled_bytes
            if self._sendable_locked():
                self._writer_wake.notify()

    def _handle_rejected(self, rejected):
        # A rejected task never gets an outcome, so there is nothing to acknowledge.
        with self._lock:
            refused = [(self._pending.pop(r.task_id), r) for r in rejected.rejections
                       if r.task_id in self._pending]
            self._changed.notify_all()
        for future, rejection in refused:
            future._finish(exception=_errors.error_from_wire(
                rejection.code, rejection.message, task_id=rejection.task_id))

    def _handle_cancel_results(self, results):
        with self._lock:
            # One answer per request, in order; an answer with no request is a broken service's.
            request = self._cancels_sent.popleft() if self._cancels_sent else None
            # The CANCELLED outcome follows, and then finds no future: it is acknowledged only.
            cancelled = [self._pending.pop(r.task_id) for r in results.results
                         if r.cancelled and r.task_id in self._pending]
            self._changed.notify_all()
        for future in cancelled:
            future._mark_cancelled(_errors.TaskError(
                grpc.StatusCode.CANCELLED,
                f"task {future.task_id} was cancelled before it started", task_id=future.task_id))
        if request is not None:
            request.answered.set()

    def _end(self, error):
        """The stream is over: fails what is pending, releases cancel waiters, closes the
        channel."""
        with self._lock:
            if self._closed and error is None:
                reason = "the session is closed"
            else:
                reason = error or "the service ended the session"
            lost = _errors.ConnectionLost(
                f"connection to the mpigate service at {self._target} lost: {reason}")
            self._ended = True
            self._end_reason = reason
            self._end_error = lost
            orphans = list(self._pending.values())
            self._pending.clear()
            cancels = self._cancels_queued + list(self._cancels_sent)
            self._cancels_queued = []
            self._cancels_sent.clear()
            self._writer_wake.notify()
            self._changed.notify_all()
        self._open_answered.set()
        for future in orphans:
            future._finish(exception=lost)
        for cancel in cancels:
            cancel.answered.set()
        self._channel.close()


def _submit_requests(specs, budget):
    """`submit` messages of about `budget` bytes each, at least one spec in each."""
    next_spec = 0
    while next_spec < len(specs):
        submit = gateway_pb2.SubmitTasks()
        size = 0
        while next_spec < len(specs):
            spec, wire_bytes = specs[next_spec]
            if submit.tasks and size + wire_bytes > budget:
                break
            submit.tasks.append(spec)
            size += wire_bytes
            next_spec += 1
        yield gateway_pb2.SessionRequest(submit=submit)


def _complete(future, outcome):
    """Ends `future` as `outcome` says (on the reader thread)."""
    task_id = outcome.task_id
    if outcome.state == task_pb2.TASK_STATE_SUCCEEDED:
        if future._chunk:
            future._finish(result=[_item_value(item, task_id) for item in outcome.items])
        else:
            future._finish(result=outcome.result)
    elif outcome.state == task_pb2.TASK_STATE_FAILED:
        error = outcome.error
        future._finish(exception=_errors.error_from_wire(
            error.code, error.message, error.exception_type, task_id))
    elif outcome.state == task_pb2.TASK_STATE_CANCELLED:
        error = outcome.error
        future._mark_cancelled(_errors.TaskError(
            _errors.status_code(error.code, grpc.StatusCode.CANCELLED), error.message,
            error.exception_type, task_id))
    else:
        future._finish(exception=_errors.TaskError(
            grpc.StatusCode.INTERNAL,
            f"the service sent an outcome with no end state for task {task_id}", task_id=task_id))


def _item_value(item, task_id):
    """One item of a chunk: its result bytes, or its exception."""
    if item.WhichOneof("outcome") == "error":
        return _errors.error_from_wire(item.error.code, item.error.message,
                                       item.error.exception_type, task_id)
    return item.result
