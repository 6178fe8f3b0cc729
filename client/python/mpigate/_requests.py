"""What a session writes: its task specs in `submit` messages of a few MiB (a burst costs a
handful of messages, not one per task), `cancel` requests, `shutdown` and `ack`s; and the sizes
that keep every message under the limit. The Session (_session.py) decides what to write and when.

Thread-safety: the functions keep no state; a CancelRequest is shared as its docstring says.
"""

import collections
import threading
import time

from mpigate import _future
from mpigate import _shared_memory
from mpigate.v1 import gateway_pb2

# A burst of submissions goes out in messages of about this much task data; a larger task alone.
BATCH_BYTES = 4 << 20
# What a SessionRequest adds around its SubmitTasks, and what a spec measured before it has its
# id adds inside a SubmitTasks (the id, and the tag and length around the spec): generous upper
# bounds (tags and varints).
REQUEST_OVERHEAD = 16
SPEC_OVERHEAD = (1 + 10) + (1 + 10)
# Acknowledgements go out once this many outcomes wait, or they hold this many bytes on the
# service, or the oldest has waited this long: never one message per task, nor one more message
# per round trip of sequential tasks.
_ACK_BATCH = 4096
_ACK_BYTES = 4 << 20
_ACK_DELAY_S = 0.02


class CancelRequest:
    """One `cancel` message; `answered` is set once the service answered or the stream ended.
    `interrupted` is how many running tasks the answer says were interrupted (or killed), written
    by the reader thread before it sets `answered`."""

    __slots__ = ("task_ids", "mode", "interrupted", "answered")

    def __init__(self, task_ids, mode):
        self.task_ids = task_ids
        self.mode = mode
        self.interrupted = 0
        self.answered = threading.Event()

    def message(self):
        return gateway_pb2.SessionRequest(cancel=gateway_pb2.CancelTasks(
            task_ids=self.task_ids, interrupt_running=self.mode == _future.CANCEL_INTERRUPT,
            force=self.mode == _future.CANCEL_KILL))


class SubmitQueue:
    """The specs of a session on their way: queued for a writer, then kept once taken until the
    service evidently has them (an event names a task id at least as high: the stream is ordered),
    so that a resumed session sends again every spec the service may lack. Not thread-safe: the
    Session holds it under its lock."""

    __slots__ = ("queued", "sent")

    def __init__(self):
        # (TaskSpec, encoded size), ids increasing: the Session appends to it directly.
        self.queued = []
        self.sent = collections.deque()  # (last task id, [(TaskSpec, size)]) taken by a writer

    def take(self):
        """Everything queued, for a writer; kept until received."""
        specs, self.queued = self.queued, []
        if specs:
            self.sent.append((specs[-1][0].task_id, specs))
        return specs

    def received_up_to(self, task_id):
        """The service evidently has every spec up to `task_id`."""
        while self.sent and self.sent[0][0] <= task_id:
            self.sent.popleft()

    def requeue_after(self, last_task_id):
        """A resumed session's service has the specs up to `last_task_id`: the others kept go
        again, before anything queued since (which has higher ids)."""
        self.received_up_to(last_task_id)
        resend = [item for _, specs in self.sent for item in specs
                  if item[0].task_id > last_task_id]
        self.sent.clear()
        self.queued = resend + self.queued

    def drop_all(self):
        """The session is over: returns every spec kept or queued (the service may never have had
        them), forgetting them."""
        specs = [spec for _, taken in self.sent for spec, _ in taken]
        specs += [spec for spec, _ in self.queued]
        self.sent.clear()
        self.queued = []
        return specs


class AckBatch:
    """The outcomes handled and not yet acknowledged (the service holds each until then), with
    their encoded bytes and when the oldest is due. Not thread-safe: the Session holds it under its
    lock."""

    __slots__ = ("ids", "_bytes", "due")

    def __init__(self, ids=()):
        self.ids = list(ids)
        self._bytes = 0
        self.due = None  # monotonic time by which they go out; None when there are none

    def __len__(self):
        return len(self.ids)

    def add(self, ids, size):
        """Outcomes of `ids`, `size` bytes encoded, handled now."""
        if not ids:
            return
        if not self.ids:
            self.due = time.monotonic() + _ACK_DELAY_S
        self.ids.extend(ids)
        self._bytes += size

    def full(self):
        """Due by number or bytes, whatever the time."""
        return len(self.ids) >= _ACK_BATCH or self._bytes >= _ACK_BYTES

    def due_now(self):
        return bool(self.ids) and (self.full() or time.monotonic() >= self.due)

    def take(self):
        """The ids, for an `ack` (or an `open` acknowledged them); starts a new batch."""
        ids, self.ids = self.ids, []
        self._bytes = 0
        self.due = None
        return ids


def write_requests(stream, specs, cancels, send_shutdown, acks, budget):
    """Writes `specs` (as `submit` messages of about `budget` bytes each), then `cancels`, the
    shutdown if `send_shutdown`, and `acks`: specs first, since every cancel and the shutdown came
    after the tasks they concern. False if the stream has ended."""
    for request in submit_requests(specs, budget):
        if not stream.write(request.SerializeToString()):
            return False
    for cancel in cancels:
        if not stream.write(cancel.message().SerializeToString()):
            return False
    if send_shutdown and not stream.write(gateway_pb2.SessionRequest(
            shutdown=gateway_pb2.ShutdownSession()).SerializeToString()):
        return False
    return not acks or stream.write(gateway_pb2.SessionRequest(
        ack=gateway_pb2.AckOutcomes(task_ids=acks)).SerializeToString())


def submit_requests(specs, budget):
    """`submit` messages of about `budget` bytes each, at least one spec in each."""
    next_spec = 0
    while next_spec < len(specs):
        # Specs are appended into the request itself: each append copies the spec (its payload
        # too), and SessionRequest(submit=...) would copy them all again.
        request = gateway_pb2.SessionRequest()
        submit = request.submit
        size = 0
        while next_spec < len(specs):
            spec, wire_bytes = specs[next_spec]
            if submit.tasks and size + wire_bytes > budget:
                break
            submit.tasks.append(spec)
            size += wire_bytes
            next_spec += 1
        yield request


def remove_inputs(specs):
    """Removes the shared memory objects holding the payloads of `specs`, which the service does
    not have."""
    for spec in specs:
        if spec.HasField("shared_payload"):
            _shared_memory.unlink(spec.shared_payload.name)
