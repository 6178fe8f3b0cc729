"""Session: one session of the mpigate service, shared by every thread of one Executor: one
Session stream at a time, resumed on a new stream when the old one breaks.

It speaks proto/mpigate/v1/gateway.proto as the C++ client does (client/internal/session.h).
When a stream breaks (not after `closed`, nor when the service ended it on purpose or drains), the
session is resumed with its resume token, with backoff, within the service's grace period; only
when that fails do its futures fail with ConnectionLost. Its parts: _session_call.py opens and
resumes streams, _requests.py makes what the session writes (submit batches, cancels, acks),
_outcomes.py turns outcomes into futures' ends, _shared_memory.py carries large payloads and
results. The stream is mpigate._native_stream's (gRPC C++, bytes only): a read or write releases
the GIL while it waits, so a round trip wakes as few threads as it can.

Threads:
- Caller threads, any number, call submit_many(), cancel(), shutdown() and bootup(): they queue
  work under the lock, or wait on a condition. A caller that finds no writer at work, and that
  submits while nothing else of the session is in flight (or cancels, or shuts down), becomes the
  writer (flat combining): it writes what is queued, its own work and whatever other callers
  queue meanwhile, and stops when nothing is left; a caller that finds a writer at work leaves its
  work to it. So a caller may wait for the transport to take its bytes (its flow control), never
  for an answer, except the answer to a cancel it waits for and the session's close.
- The writer thread, _write_on_time(), writes what callers leave to it: tasks submitted while
  others are in flight (a burst then goes out in few messages, as the writer catches up),
  acknowledgements that have waited their delay, work queued on the reader thread (a done
  callback's submit or cancel: the reader never writes), a caller's work while it waits for room
  under max_inflight, and what a resumed stream must get again.
- Whoever writes takes everything queued at once: specs, then cancels, the shutdown and the
  acknowledgements that are due.
- The reader thread runs _read(): it reads events, marks futures running, passes on their
  progress, completes them (running their progress and done callbacks) outside the lock, and
  queues acknowledgements of the outcomes it handled. When a stream breaks it resumes the session
  on a new one (the constructor opens the first); when the session is over for good it fails
  whatever is still pending and releases every cancel waiter.

Invariants:
- A future is in _pending from before its spec can be sent until its task has ended, so an outcome
  that arrives before submit_many() returns still finds it. A future leaves _pending as it is
  completed, so an outcome sent again after a resume never completes it twice. Futures change
  state only on the reader thread (a task too large to send fails before it has one).
- Task ids are taken under the lock as specs are queued, so they increase in sending order, and
  the service's SessionOpened.last_task_id says exactly which specs it has.
- A spec the writer takes is kept (_submits) in the same critical section until the service
  evidently has it, so a resumed session gets again every spec it may lack, also one a stream's
  writer took as the stream broke.
- A cancel request moves to _cancels_sent before it is written; the service answers cancels in the
  order it got them, so the reader pairs each answer with the oldest request. A resumed stream
  gets the unanswered ones again, first.
- One thread at a time is the writer (_writing), and takes work only while the current stream
  (_stream) is adopted (_connected), which changes under the lock on the reader thread (or in the
  constructor); a failed write also ends _connected until the reader adopts the next stream.
- Once _ended is set, nothing is added to _pending or to the cancel lists.
- A shared memory object holding a spec's payload is the caller's until the spec is queued (it
  removes it if it cannot queue it), then the service's; once the session is over, those of specs
  the service may not have had are removed. A result's object is removed as the reader maps it,
  or unread when its outcome finds no future.
"""

import collections
import threading
import time

import grpc

from mpigate import _errors
from mpigate import _future
from mpigate import _outcomes
from mpigate import _requests
from mpigate import _session_call
from mpigate import _shared_memory
from mpigate.v1 import gateway_pb2

# After `closed`, how long shutdown waits for the service to end the stream before cancelling it.
_CLOSE_GRACE_S = 5.0


class Session:
    """One session of the service, over one stream at a time. See the module docstring."""

    def __init__(self, access, client_name, connect_timeout, max_message_bytes, max_inflight,
                 env, resume_token=b"", acked_task_ids=(),
                 shared_memory_min_bytes=_shared_memory.DEFAULT_MIN_BYTES, max_running=None):
        """Connects to the service `access` (an _endpoint.Access) names and opens the session, or
        with `resume_token` resumes that session (telling the service the outcomes of
        `acked_task_ids` are had); raises ConnectionError if the service does not answer within
        `connect_timeout` seconds or refuses (e.g. NOT_FOUND: no such session to resume).
        Payloads and results of at least `shared_memory_min_bytes` (0: none) go through shared
        memory where the service allows it. `max_running` caps how many of the session's tasks
        are on workers at once (OpenSession.max_running_tasks); None for no cap. Called by the
        Executor's constructor."""
        if max_running is not None and not (
                isinstance(max_running, int) and 1 <= max_running < 1 << 32):
            raise ValueError(f"max_running must be an int from 1 to 2**32 - 1, or None, not "
                             f"{max_running!r}")
        target = access.target
        self._target = target
        self._max_inflight = max_inflight
        self._connect_timeout = connect_timeout
        self._channel, self._metadata = _session_call.connect(access, max_message_bytes)
        # Every `open`; a resuming one adds the token and the acknowledgements.
        self._open = gateway_pb2.OpenSession(client_name=client_name,
                                             max_message_bytes=max_message_bytes, env=env,
                                             max_running_tasks=max_running or 0)
        if shared_memory_min_bytes > 0:
            self._open.shared_memory_domain = _shared_memory.domain()
            if self._open.shared_memory_domain:
                self._open.shared_result_min_bytes = shared_memory_min_bytes
        # SessionOpened.shared_memory_prefix: "" unless payloads may go into shared memory. Set
        # under the lock as each stream's `opened` is adopted; read by callers.
        self._shared_memory_prefix = ""
        self._shared_memory_min_bytes = shared_memory_min_bytes
        self._lock = threading.Lock()
        # The writer thread waits on this for work nobody else writes; the reader notifies it.
        self._writer_wake = threading.Condition(self._lock)
        # Waiters for the session's state (pool state, closed, ended, room under max_inflight).
        self._changed = threading.Condition(self._lock)
        # Protected by _lock:
        self._next_task_id = 1
        self._pending = {}  # task id -> Future, for tasks that have not ended
        self._submits = _requests.SubmitQueue()  # specs queued, and written but maybe not had
        self._cancels_queued = []  # _CancelRequest not yet taken by the writer
        self._cancels_sent = collections.deque()  # taken by a writer, not yet answered
        self._acks = _requests.AckBatch(acked_task_ids)  # outcomes handled, not acknowledged
        self._shutdown_requested = False
        self._shutdown_sent = False
        self._send_limit = max_message_bytes
        self._session_id = 0
        self._workers = 0
        self._pool_state = "READY"
        self._pool_reason = ""
        self._generation = 0  # the number of the current stream
        self._connected = False  # the current stream's `opened` is adopted: it may be written
        self._stream = None  # the current stream (a _native_stream.Stream)
        self._writing = False  # a thread is the writer (see the module docstring)
        # The writer thread waits with a timeout for acknowledgements to become due.
        self._ack_timer_armed = False
        # The writer thread waits on _writer_wake and nobody has woken it yet.
        self._writer_waiting = False
        self._closing = False  # shutdown cancelled the stream, or we failed: no more resuming
        self._closed = False  # the service sent `closed`
        self._ended = False  # the session is over: its last stream ended, not to be resumed
        self._end_error = None  # ConnectionLost once _ended, for later submits
        # Set by the constructor, then by the reader when it resumes (under _lock).
        self._resume_token = bytes(resume_token)
        self._resume_grace_s = 0.0
        self._reader = None
        self._writer = None
        self._reattached = []

        deadline = time.monotonic() + connect_timeout
        try:
            stream, opened = self._open_stream(deadline, retry=bool(resume_token))
        except _session_call.OpenFailed as failure:
            self._channel.close()
            raise _session_call.connection_error(failure, access, connect_timeout,
                                                 resuming=bool(resume_token)) from None
        with self._lock:
            self._session_id = opened.session_id
            # A resumed session's earlier tasks: new ids continue after them, and their futures
            # are made before the reader can deliver their outcomes.
            self._next_task_id = opened.last_task_id + 1
            for task_id in opened.pending_task_ids:
                future = _future.Future(self, task_id, chunk=None)
                self._pending[task_id] = future
                self._reattached.append(future)
            self._adopt_locked(stream, opened)
        self._reader = threading.Thread(target=self._read, args=(stream,), name="mpigate-reader",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_on_time, name="mpigate-writer",
                                        daemon=True)
        self._reader.start()
        self._writer.start()

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

    @property
    def resume_token(self):
        """SessionOpened.resume_token: b"" if the service does not resume sessions."""
        with self._lock:
            return self._resume_token

    @property
    def reattached(self):
        """The futures of a resumed session's unfinished tasks, in task id order (constant)."""
        return list(self._reattached)

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
        on_reader = threading.current_thread() is self._reader
        futures = []
        try:
            if parts is not None:
                for spec, spec_parts in zip(specs, parts):
                    if spec_parts is not None:
                        _shared_memory.set_payload(spec, spec_parts, self._shared_memory_prefix,
                                                   self._shared_memory_min_bytes)
            sized = [(spec, spec.ByteSize() + _requests.SPEC_OVERHEAD) for spec in specs]
            with self._lock:
                self._check_open_locked()
                for spec, wire_bytes in sized:
                    if not on_reader and not self._has_room_locked():
                        # What this call queued so far must go out for room to be made.
                        self._wake_writer_locked()
                        self._changed.wait_for(self._has_room_locked)
                    self._check_open_locked()
                    futures.append(self._enqueue_locked(spec, wire_bytes, chunk, future_factory))
                # Alone: nothing else of the session is in flight.
                write_here = self._writer_for_locked(
                    on_reader, alone=len(self._pending) <= len(futures))
        except BaseException:
            # The service never hears of the rest (a part that is not bytes-like, or the
            # session cannot take tasks): their inputs are still ours to remove.
            _requests.remove_inputs(specs[len(futures):])
            raise
        if write_here:
            self._write_all()
        return futures

    def cancel(self, task_ids, wait, mode=_future.CANCEL_PENDING_ONLY):
        """Asks the service to cancel those of `task_ids` that are still queued and, as `mode`
        (_future.CANCEL_*) says, to interrupt or kill those that are running. With `wait`, blocks
        until the answer is in and the cancelled futures are CANCELLED, and returns how many
        running tasks were interrupted or killed; never waits on the reader thread, which
        delivers the answer. Returns 0 when it does not wait."""
        if not task_ids:
            return 0
        request = _requests.CancelRequest(list(task_ids), mode)
        on_reader = threading.current_thread() is self._reader
        with self._lock:
            # After `closed`, or once the stream is over, no task of this session is pending.
            if self._closed or self._ended:
                return 0
            self._cancels_queued.append(request)
            write_here = self._writer_for_locked(on_reader)
        if write_here:
            self._write_all()
        if not wait or on_reader:
            return 0
        request.answered.wait()
        return request.interrupted

    def shutdown(self, wait, cancel_futures):
        """Stops the session accepting tasks (later submits raise RuntimeError); with
        `cancel_futures`, cancels every task still queued before returning; with `wait`, returns
        once every task has ended and the stream is over. Safe to call more than once."""
        on_reader = threading.current_thread() is self._reader
        with self._lock:
            self._shutdown_requested = True
            unfinished = list(self._pending) if cancel_futures else []
            self._changed.notify_all()  # submitters waiting for room raise now
            write_here = self._writer_for_locked(on_reader)
        if write_here:
            self._write_all()
        # An explicit cancel rather than shutdown{cancel_pending}: its answer says when the
        # futures are cancelled, and it still works after an earlier shutdown. The service skips
        # the tasks that have started.
        self.cancel(unfinished, wait=True)
        if not wait:
            return
        if on_reader:
            raise RuntimeError("shutdown(wait=True) cannot be called from a done callback: the "
                               "callback runs on the thread that completes the futures")
        with self._lock:
            self._changed.wait_for(lambda: self._closed or self._ended)
            # After `closed` the service ends the stream; should it not, nothing is lost. (Once the
            # session is over, nothing is pending either, and an attempt to resume ends.)
            if not self._changed.wait_for(lambda: self._ended, _CLOSE_GRACE_S):
                self._closing = True
                self._stream.cancel()
                self._changed.notify_all()
        self._reader.join()
        self._writer.join()

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
        if wire_bytes + _requests.REQUEST_OVERHEAD > self._send_limit:
            _requests.remove_inputs([spec])
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
        self._submits.queued.append((spec, wire_bytes))
        return future

    # --- Writing: whichever thread is the writer ---

    def _writer_for_locked(self, on_reader, alone=True):
        """After queueing work: whether the calling thread is now the writer and must call
        _write_all(). It is if nobody writes and, for submitted tasks, the session has nothing
        else in flight (`alone`): a round trip then waits for no other thread. Under load the
        writer thread writes instead, and catches up with a burst of submits in few messages
        (each caller writing its own tasks would make one message and one write per task). The
        reader thread never writes: it must keep reading."""
        if on_reader or not alone:
            if not self._writing:
                self._wake_writer_locked()
            return False
        return self._take_writer_locked()

    def _wake_writer_locked(self):
        """Wakes the writer thread if it waits: at most once, however many callers ask."""
        if self._writer_waiting:
            self._writer_waiting = False
            self._writer_wake.notify()

    def _take_writer_locked(self):
        """Makes the calling thread the writer if nobody is and there is something to write."""
        if self._writing or not self._may_write_locked() or not self._sendable_locked():
            return False
        self._writing = True
        return True

    def _may_write_locked(self):
        return self._connected and not self._closed and not self._ended

    def _sendable_locked(self):
        return bool(self._submits.queued or self._cancels_queued or
                    (self._shutdown_requested and not self._shutdown_sent) or
                    self._acks.due_now())

    def _write_all(self):
        """As the writer: writes what is queued, again and again, until nothing is; then is the
        writer no longer. What it takes is kept (_submits, _cancels_sent) first: should the stream
        break before it is written, a resumed stream gets it again."""
        try:
            while True:
                with self._lock:
                    if not self._may_write_locked() or not self._sendable_locked():
                        # In the same critical section as the look: work queued after it finds
                        # no writer, and a caller writes it or wakes the writer thread.
                        self._release_writer_locked()
                        return
                    stream, generation = self._stream, self._generation
                    specs = self._submits.take()
                    cancels, self._cancels_queued = self._cancels_queued, []
                    # Before the write, so that the answer, however quick, finds its request.
                    self._cancels_sent.extend(cancels)
                    send_shutdown = self._shutdown_requested and not self._shutdown_sent
                    self._shutdown_sent = self._shutdown_sent or send_shutdown
                    # Lost with a broken stream, acknowledgements cost only a repeat: the resumed
                    # session sends those outcomes again, and the reader acknowledges them again.
                    acks = self._acks.take() if self._acks.due_now() else []
                    budget = min(_requests.BATCH_BYTES,
                                 self._send_limit - _requests.REQUEST_OVERHEAD)
                if not _requests.write_requests(stream, specs, cancels, send_shutdown, acks,
                                                budget):
                    with self._lock:
                        # The stream has ended: the reader resumes the session or ends it.
                        if generation == self._generation:
                            self._connected = False
                        self._release_writer_locked()
                    return
        except BaseException:
            with self._lock:
                self._release_writer_locked()
            raise

    def _release_writer_locked(self):
        """The writer is the writer no longer. Whatever is left to write (a stream adopted
        meanwhile, whose adoption found a writer at work) goes to the writer thread, which also
        keeps the acknowledgements' time unless it already waits for it."""
        self._writing = False
        if ((self._may_write_locked() and self._sendable_locked()) or
                (self._acks and not self._ack_timer_armed)):
            self._wake_writer_locked()

    def _write_on_time(self):
        """The writer thread: writes what nobody else does (see the module docstring), until the
        session is over."""
        while True:
            with self._lock:
                while not self._take_writer_locked():
                    if self._ended:
                        return
                    timeout = None
                    if self._acks and not self._writing and self._may_write_locked():
                        timeout = max(0.0, self._acks.due - time.monotonic())
                    self._ack_timer_armed = timeout is not None
                    self._writer_waiting = True
                    self._writer_wake.wait(timeout)
                    self._writer_waiting = False
                self._ack_timer_armed = False
            self._write_all()

    # --- The reader thread ---

    def _read(self, stream):
        parse = gateway_pb2.SessionEvent.FromString
        while True:
            code, error = None, None
            try:
                data = stream.read()
                while data is not None:
                    self._handle(parse(data))
                    data = stream.read()
                code, error = _session_call.status(stream)
            except Exception as bug:  # A bug of ours must not leave futures waiting forever.
                error = f"the client failed to handle an event: {bug!r}"
                with self._lock:
                    self._closing = True
                stream.cancel()
            if not self._should_resume(code):
                break
            try:
                stream = self._resume()
            except _session_call.OpenFailed as failure:
                error = (f"{error}, and the session could not be resumed within its grace period "
                         f"of {self._resume_grace_s:g} s: {failure.reason}")
                break
        self._end(error)

    def _should_resume(self, code):
        """Whether the session should be resumed after its stream ended with `code`."""
        with self._lock:
            # A draining service is going away with its sessions: there is nothing to resume.
            return (code in _session_call.LOOKS_BROKEN and not self._closed and
                    not self._closing and
                    self._pool_state != "DRAINING" and bool(self._resume_token) and
                    self._resume_grace_s > 0)

    def _resume(self):
        """Resumes the session on a new stream within its grace period; returns the stream.
        Raises _session_call.OpenFailed if that fails."""
        # The service keeps the session for its grace period from when it noticed the break,
        # which is no earlier than now.
        stream, opened = self._open_stream(time.monotonic() + self._resume_grace_s, retry=True)
        with self._lock:
            self._adopt_locked(stream, opened)
        return stream

    def _open_stream(self, deadline, retry):
        """Starts a Session stream with `open` (carrying the resume token, if any, and the
        acknowledgements not yet sent) and reads its `opened`; returns (stream, opened). With
        `retry`, tries again what may pass, with backoff, until `deadline`. Raises OpenFailed.
        On the constructor's thread or the reader's: nobody takes work to write meanwhile."""
        return _session_call.open_retrying(self._open_stream_once, deadline, retry,
                                           self._connect_timeout, self._pause_unless_closing)

    def _pause_unless_closing(self, seconds):
        """Waits `seconds` before another attempt to open; False if shutdown gives up meanwhile
        (which cuts the wait short) or has already."""
        with self._lock:
            if self._closing:
                return False
            self._changed.wait_for(lambda: self._closing, seconds)
            return True

    def _open_stream_once(self, deadline):
        with self._lock:
            # Nobody takes work to write until this stream is adopted.
            self._generation += 1
            self._connected = False
            request = gateway_pb2.SessionRequest(open=self._open)
            if self._resume_token:
                request.open.resume_token = self._resume_token
                # Only the reader adds to _acks, and no writer takes them now.
                request.open.acked_task_ids.extend(self._acks.ids)
        return _session_call.open_stream(self._channel, self._metadata, request, deadline)

    def _adopt_locked(self, stream, opened):
        """Makes `stream` the current stream after its `opened`: for a resumed session, queues
        again the specs the service may lack (ids above last_task_id), the unanswered cancels and
        a pending shutdown, for the writer thread to write."""
        self._resume_token = opened.resume_token
        self._resume_grace_s = opened.resume_grace_ms / 1000
        self._shared_memory_prefix = opened.shared_memory_prefix
        if opened.max_message_bytes:
            self._send_limit = min(self._send_limit, opened.max_message_bytes)
        if opened.workers:
            self._workers = opened.workers
        # A service that does not describe its pool opens sessions only once it is ready.
        if opened.HasField("pool"):
            self._set_pool_locked(opened.pool)
        # The `open` acknowledged them.
        self._acks.take()
        if opened.resumed:
            self._submits.requeue_after(opened.last_task_id)
            # An unanswered cancel may never have arrived; asking again is harmless.
            self._cancels_queued = list(self._cancels_sent) + self._cancels_queued
            self._cancels_sent.clear()
            self._shutdown_sent = False
        self._stream = stream
        self._connected = True
        if self._closing:
            stream.cancel()  # Shutdown gave up meanwhile: this stream ends as the last did.
        self._wake_writer_locked()

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
        elif kind == "closed":
            with self._lock:
                self._closed = True
                self._wake_writer_locked()
                self._changed.notify_all()
                stream = self._stream
            # Nothing more to write: the service ends the stream once it sees the half-close.
            stream.writes_done()
        # Anything else (a second `opened`, a newer service's event): nothing we need.

    def _set_pool_locked(self, change):
        state = _outcomes.pool_state(change)
        if state is None:
            return
        self._pool_state = state
        self._pool_reason = change.reason
        if change.workers:
            self._workers = change.workers
        self._changed.notify_all()

    def _handle_updates(self, updates):
        handled = []
        handled_bytes = 0
        unread = []  # objects of results nobody waits for
        with self._lock:
            if self._submits.sent:
                self._submits.received_up_to(max(
                    max(updates.started, default=0),
                    max((p.task_id for p in updates.progress), default=0),
                    max((o.task_id for o in updates.outcomes), default=0)))
            # Progress before the outcomes: a task's last report reaches its future and callbacks
            # also when the task ends in the same update.
            progress = [(self._pending[p.task_id], p) for p in updates.progress
                        if p.task_id in self._pending]
            finished = []
            for outcome in updates.outcomes:
                # Acknowledged also when it finds no future (its cancel was answered first): the
                # service holds every outcome until then.
                handled.append(outcome.task_id)
                handled_bytes += outcome.ByteSize()
                future = self._pending.pop(outcome.task_id, None)
                if future is not None:
                    finished.append((future, outcome))
                elif outcome.HasField("shared_result"):
                    unread.append(outcome.shared_result.name)
            # Starts after the outcomes: a task that ended in this update has no use for its
            # start, and its future is no longer pending.
            started = [self._pending[i] for i in updates.started if i in self._pending]
        # Removing a large object frees its pages: never under the lock.
        for name in unread:
            _shared_memory.unlink(name)
        # Starts first: a task's start comes no later than its progress, and that no later than
        # its outcome.
        for future in started:
            future._mark_running()
        for future, report in progress:
            future._mark_running()  # also one whose start is skipped: it ends in this update
            future._report_progress(report.fraction, report.message)
        for future, outcome in finished:
            _outcomes.complete(future, outcome)
        with self._lock:
            if finished:
                self._changed.notify_all()  # room under max_inflight
            if not handled:
                return
            if not self._acks and not self._ack_timer_armed:
                self._wake_writer_locked()  # it now waits until they are due
            self._acks.add(handled, handled_bytes)
            if not self._writing and self._acks.full():
                self._wake_writer_locked()

    def _handle_rejected(self, rejected):
        # A rejected task never gets an outcome, so there is nothing to acknowledge.
        with self._lock:
            self._submits.received_up_to(max((r.task_id for r in rejected.rejections), default=0))
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
        # An interrupted task runs on until its function gives up; its outcome says how it ended.
        interrupted = sum(1 for r in results.results if r.interrupted)
        for future in cancelled:
            future._mark_cancelled(_errors.TaskError(
                grpc.StatusCode.CANCELLED,
                f"task {future.task_id} was cancelled before it started", task_id=future.task_id))
        if request is not None:
            request.interrupted = interrupted
            request.answered.set()

    def _end(self, error):
        """The session is over: fails what is pending, releases cancel waiters, closes the
        channel."""
        with self._lock:
            if self._closed and error is None:
                reason = "the session is closed"
            else:
                reason = error or "the service ended the session"
            lost = _errors.ConnectionLost(
                f"connection to the mpigate service at {self._target} lost: {reason}")
            self._ended = True
            self._end_error = lost
            orphans = list(self._pending.values())
            self._pending.clear()
            # The service never had these, or will drop them with the session: their inputs are
            # removed below.
            unsent = self._submits.drop_all()
            cancels = self._cancels_queued + list(self._cancels_sent)
            self._cancels_queued = []
            self._cancels_sent.clear()
            self._wake_writer_locked()
            self._changed.notify_all()
        _requests.remove_inputs(unsent)
        for future in orphans:
            future._finish(exception=lost)
        for cancel in cancels:
            cancel.answered.set()
        self._channel.close()


