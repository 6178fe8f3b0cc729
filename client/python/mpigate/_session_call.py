"""The call of a session: opening a Session stream (`open`, then its `opened`) and resuming one
with backoff, and what a stream's end means. The Session (_session.py) builds each `open` and
adopts the stream; this module only talks to the stream.

A service that accepts the connection but never answers `open` must not hang the client: a timer
per attempt cancels the stream at its deadline.

Threads: open_stream() and open_retrying() run on the thread that opens the session (the
Executor's constructor, then the session's reader thread); they keep no state.
"""

import threading
import time

import grpc

from mpigate import _native_stream
from mpigate.v1 import gateway_pb2

SESSION_METHOD = "/mpigate.v1.Gateway/Session"
# The status codes _native_stream's finish() gives as numbers.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}

# Resuming a broken session: the first retry after this long, doubling up to the second.
_FIRST_RESUME_BACKOFF_S = 0.02
_MAX_RESUME_BACKOFF_S = 1.0
# A stream that ended with one of these looks broken (worth resuming) rather than ended on purpose
# by the service (OK, or an error about the request such as INVALID_ARGUMENT).
LOOKS_BROKEN = frozenset((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                          grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                          grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED))
# Opening a stream to resume failed with one of these: a later try may succeed (the service
# unreachable or restarting its listener, or still holding the old stream).
_MAY_RESUME_LATER = frozenset((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION,
                               grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED))


class OpenFailed(Exception):
    """A stream that did not get to `opened`: its status `code` (None: it timed out) and why."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def connect(access, max_message_bytes):
    """(channel, metadata) for the service `access` (an _endpoint.Access) names: a channel with
    the message size limit both ways, and the bearer token of a service on TCP (common/access.h)
    as every call's metadata."""
    # The channel reconnects within a second after a dropped connection (not gRPC's default of up
    # to two minutes), so that a resumed session is back well within the service's grace period.
    channel = _native_stream.Channel(
        access.target, SESSION_METHOD, max_message_bytes, tls=access.tls,
        root_certificates=access.root_certificates, private_key=access.private_key,
        certificate_chain=access.certificate_chain)
    return channel, [("authorization", f"Bearer {access.token}")] if access.token else []


def connection_error(failure, access, connect_timeout, resuming):
    """The ConnectionError of a session that could not be opened (or resumed) after `failure`."""
    if failure.code is None:
        return ConnectionError(
            f"the mpigate service at {access.target} did not answer within {connect_timeout} s; "
            "is it running?" + (" Over TLS, a certificate that is not trusted fails the "
                               "handshake the same way." if access.tls else ""))
    verb = "resume the session" if resuming else "open a session"
    return ConnectionError(
        f"the mpigate service at {access.target} did not {verb}: {failure.reason}")


def status(stream):
    """(code, "CODE: details") of an ended stream; (None, None) if it ended OK."""
    number, details = stream.finish()
    code = _STATUS_CODES.get(number, grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.OK:
        return None, None
    return code, f"{code.name}: {details}"


def open_retrying(attempt, deadline, retry, attempt_timeout, pause):
    """Returns attempt(attempt's deadline): (stream, opened). With `retry`, tries again what may
    pass, each attempt within `attempt_timeout` s, with backoff, until `deadline`;
    pause(backoff) waits before the next try and returns False to give up (the session is
    closing). Raises the last OpenFailed."""
    backoff = _FIRST_RESUME_BACKOFF_S
    while True:
        try:
            return attempt(min(deadline, time.monotonic() + attempt_timeout))
        except OpenFailed as failure:
            if (not retry or failure.code not in _MAY_RESUME_LATER or
                    time.monotonic() + backoff >= deadline or not pause(backoff)):
                raise
        backoff = min(2 * backoff, _MAX_RESUME_BACKOFF_S)


def open_stream(channel, metadata, request, deadline):
    """Starts a Session stream on `channel`, writes `request` (an `open`) and reads its `opened`
    by `deadline`; returns (stream, opened). Raises OpenFailed."""
    # wait_for_ready: a service still starting, or a connection being made again, gets until
    # the deadline.
    stream = channel.stream(metadata=metadata, wait_for_ready=True)
    timer_lock = threading.Lock()
    timed_out = False
    answered = False

    def give_up():
        nonlocal timed_out
        with timer_lock:
            if not answered:
                timed_out = True
                stream.cancel()

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), give_up)
    timer.daemon = True
    timer.start()
    # A failed write means the stream already ended: the read fails too, and finish says why.
    data = stream.read() if stream.write(request.SerializeToString()) else None
    with timer_lock:
        answered = True
    timer.cancel()
    if timed_out:
        raise OpenFailed(None, "it did not answer `open` in time")
    if data is None:
        code, error = status(stream)
        if code is None:
            raise OpenFailed(grpc.StatusCode.INTERNAL,
                             "it ended the stream before opening the session")
        raise OpenFailed(code, error)
    event = gateway_pb2.SessionEvent.FromString(data)
    if event.WhichOneof("event") != "opened":
        stream.cancel()
        raise OpenFailed(grpc.StatusCode.INTERNAL,
                         f"it answered `open` with {event.WhichOneof('event')}")
    return stream, event.opened
