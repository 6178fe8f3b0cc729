"""Outcome decoding: how a TaskOutcome ends its future (a result, a chunk's per-item results, a
task error, CANCELLED), with a result in shared memory mapped rather than copied; and what a pool
state change says.

Thread-safety: called on the session's reader thread, which alone completes futures.
"""

import grpc

from mpigate import _errors
from mpigate import _shared_memory
from mpigate.v1 import gateway_pb2
from mpigate.v1 import task_pb2

_POOL_STATE_PREFIX = "POOL_STATE_"


def pool_state(change):
    """The state a PoolStateChange names ("READY", "BROKEN", ...), or None for none or a newer
    service's state, which nothing can act on."""
    if change.state == gateway_pb2.POOL_STATE_UNSPECIFIED:
        return None
    try:
        return gateway_pb2.PoolState.Name(change.state)[len(_POOL_STATE_PREFIX):]
    except ValueError:
        return None


def complete(future, outcome):
    """Ends `future` as `outcome` says (on the reader thread)."""
    task_id = outcome.task_id
    if outcome.HasField("shared_result"):
        try:
            result = _shared_memory.map_result(outcome.shared_result.name,
                                               outcome.shared_result.size)
        except _shared_memory.SharedMemoryError as error:
            future._finish(exception=_errors.TaskError(grpc.StatusCode.DATA_LOSS, str(error),
                                                       task_id=task_id))
            return
    else:
        result = outcome.result
    if outcome.state == task_pb2.TASK_STATE_SUCCEEDED:
        if future._chunk or (future._chunk is None and outcome.items):
            future._finish(result=[item_value(item, task_id) for item in outcome.items])
        else:
            future._finish(result=result)
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


def item_value(item, task_id):
    """One item of a chunk: its result bytes, or its exception."""
    if item.WhichOneof("outcome") == "error":
        return _errors.error_from_wire(item.error.code, item.error.message,
                                       item.error.exception_type, task_id)
    return item.result
