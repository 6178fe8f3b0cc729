"""FakeGateway: a mpigate.v1.Gateway in the test process whose Session stream the test drives.

    fake = FakeGateway()                    # serves on a Unix socket; fake.target to connect to
    executor = mpigate.Executor(fake.target)
    future = executor.submit("echo", b"x")
    [submit] = fake.await_requests("submit")            # what the client sent
    fake.send(updates(outcomes=[succeeded(submit.tasks[0].task_id, b"x")]))
    ...
    fake.close()

It answers `open` with `opened` by itself (unless answer_open=False; `on_open(OpenSession)` may
make the answer, e.g. for a resumed session) and sends nothing else unless the test says so:
events the test queues with send() go out in order on the current stream, end() ends it with OK
or aborts it with a status. So a test decides when each outcome arrives, with no sleeps. A client
that resumes opens a new stream, which becomes the current one (await_requests("open", 2)).

Thread-safety: send(), end(), await_requests() and requests() may be called from any thread; gRPC's
threads run the Session handler and read the requests.
"""

import concurrent.futures
import queue
import shutil
import tempfile
import threading

import grpc

from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc
from mpigate.v1 import task_pb2

# How long await_requests() waits; reached only when the client does not send what it should.
_PATIENCE_S = 30

_END = object()


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """One fake service, for one Session stream at a time (they would share its event queue)."""

    def __init__(self, answer_open=True, pool_state=gateway_pb2.POOL_STATE_READY, on_open=None):
        self._answer_open = answer_open
        self._pool_state = pool_state
        self._on_open = on_open or (lambda open_request: opened(pool_state))
        # The current stream's events; each stream has its own queue, so that the end of one
        # (its termination callback) never ends the next.
        self._events = queue.Queue()
        self._lock = threading.Condition()
        self._requests = []
        self._dir = tempfile.mkdtemp(prefix="mpigate-fake-", dir="/tmp")
        self.target = f"unix:{self._dir}/fake.sock"
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        gateway_pb2_grpc.add_GatewayServicer_to_server(self, self._server)
        self._server.add_insecure_port(self.target)
        self._server.start()

    def close(self):
        """Stops serving; ends any stream still open."""
        self._events.put(_END)
        self._server.stop(grace=None).wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def send(self, *events):
        """Queues SessionEvents for the current stream."""
        with self._lock:
            for event in events:
                self._events.put(event)

    def end(self, code=None, details=""):
        """Ends the current stream once the events queued before have gone: with OK, or aborted
        with `code` (a grpc.StatusCode) and `details`."""
        with self._lock:
            self._events.put((_END, code, details))

    def requests(self, kind=None):
        """The requests received so far, of one kind ("submit", "cancel", "ack", ...) or all."""
        with self._lock:
            return [_field(r) if kind else r for r in self._requests
                    if kind is None or r.WhichOneof("request") == kind]

    def await_requests(self, kind, count=1, until=None):
        """Waits until `count` requests of `kind` arrived (or `until(those requests)` holds);
        returns them. Raises AssertionError if they do not come in time."""
        def enough():
            those = [_field(r) for r in self._requests if r.WhichOneof("request") == kind]
            return those if (until(those) if until else len(those) >= count) else None

        with self._lock:
            if not self._lock.wait_for(enough, _PATIENCE_S):
                raise AssertionError(f"the client did not send the {kind} requests expected; "
                                     f"it sent {self._requests}")
            return enough()

    def Session(self, request_iterator, context):
        # The requests are read on a thread of their own, so that this generator only waits for
        # the events the test queues; a stream the client ends unblocks it too.
        events = queue.Queue()
        with self._lock:
            self._events = events
        context.add_callback(lambda: events.put(_END))
        threading.Thread(target=self._read, args=(request_iterator, events), daemon=True).start()
        while True:
            event = events.get()
            if event is _END:
                return
            if isinstance(event, tuple):
                _, code, details = event
                if code is not None:
                    context.abort(code, details)
                return
            yield event

    def _read(self, request_iterator, events):
        try:
            for request in request_iterator:
                if request.WhichOneof("request") == "open" and self._answer_open:
                    events.put(self._on_open(request.open))
                with self._lock:
                    self._requests.append(request)
                    self._lock.notify_all()
        except grpc.RpcError:
            pass  # The stream ended.


def _field(request):
    return getattr(request, request.WhichOneof("request"))


# --- Events ---

def opened(pool_state=gateway_pb2.POOL_STATE_READY, workers=2, **fields):
    """An `opened` event; `fields` are more SessionOpened fields (resume_token, resumed, ...)."""
    return gateway_pb2.SessionEvent(opened=gateway_pb2.SessionOpened(
        session_id=1, workers=workers,
        pool=gateway_pb2.PoolStateChange(state=pool_state, workers=workers), **fields))


def abort(code, details):
    """Not an event: queued (or returned by on_open), it aborts the stream with `code`."""
    return (_END, code, details)


def updates(started=(), outcomes=(), progress=()):
    """One TaskUpdates event; each progress report is (task_id, fraction, message)."""
    return gateway_pb2.SessionEvent(updates=gateway_pb2.TaskUpdates(
        started=list(started), outcomes=list(outcomes),
        progress=[gateway_pb2.TaskProgress(task_id=task_id, fraction=fraction, message=message)
                  for task_id, fraction, message in progress]))


def succeeded(task_id, result=b"", items=None):
    outcome = task_pb2.TaskOutcome(task_id=task_id, state=task_pb2.TASK_STATE_SUCCEEDED)
    if items is None:
        outcome.result = result
    else:
        outcome.items.extend(task_pb2.ItemOutcome(result=item) for item in items)
    return outcome


def cancelled(task_id):
    return task_pb2.TaskOutcome(task_id=task_id, state=task_pb2.TASK_STATE_CANCELLED,
                                error=task_pb2.TaskError(code=1, message="cancelled by the client"))


def rejected(task_id, code, message):
    return gateway_pb2.SessionEvent(rejected=gateway_pb2.TaskRejections(
        rejections=[gateway_pb2.TaskRejection(task_id=task_id, code=code.value[0],
                                              message=message)]))


def cancel_results(*results):
    """One CancelResults event; each result is (task_id, cancelled) or (task_id, cancelled,
    interrupted)."""
    return gateway_pb2.SessionEvent(cancel_results=gateway_pb2.CancelResults(results=[
        gateway_pb2.CancelResult(task_id=result[0], cancelled=result[1],
                                 interrupted=len(result) > 2 and result[2])
        for result in results]))


def pool(state, reason=""):
    return gateway_pb2.SessionEvent(pool=gateway_pb2.PoolStateChange(state=state, reason=reason))


def closed():
    return gateway_pb2.SessionEvent(closed=gateway_pb2.SessionClosed())
