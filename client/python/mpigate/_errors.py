"""The exceptions a future of mpigate ends with, and how the wire's errors become them.

A task that fails ends its future with TaskError, carrying the canonical code the service sent (as
a grpc.StatusCode), its message and, for a C++ exception that escaped the function, its type. A
task refused because the pool is broken ends with BrokenExecutor instead, as in concurrent.futures
and mpi4py.futures; one whose session's stream broke ends with ConnectionLost.

Thread-safety: immutable values; error_from_wire is a pure function.
"""

import concurrent.futures

import grpc

# The service's messages for a task of a broken pool start so (mpigate.v1.PoolState BROKEN).
_BROKEN_PREFIX = "BrokenExecutor:"

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class TaskError(Exception):
    """A task, or one item of a map's chunk, that has no result.

    Attributes:
      code: a grpc.StatusCode, e.g. NOT_FOUND for an unknown function, UNKNOWN for an exception
        escaping the function, DEADLINE_EXCEEDED for a queue or run timeout.
      message: why, from the function or from mpigate.
      exception_type: the C++ exception type that escaped the function, e.g.
        "std::invalid_argument"; "" when the function returned an error instead.
      task_id: the task's id in its session (0 if it never reached the service).
    """

    def __init__(self, code, message, exception_type="", task_id=0):
        self.code = code
        self.message = message
        self.exception_type = exception_type
        self.task_id = task_id
        text = f"{code.name}: {exception_type}: {message}" if exception_type else (
            f"{code.name}: {message}")
        super().__init__(text)


class BrokenExecutor(concurrent.futures.BrokenExecutor):
    """The pool cannot run tasks: a worker initializer failed (the service says why)."""


class ConnectionLost(ConnectionError):
    """The session's stream to the service broke before the task ended."""


def status_code(wire_code, if_zero=grpc.StatusCode.UNKNOWN):
    """The grpc.StatusCode of a canonical code number; 0 (which would mean OK) gives `if_zero`."""
    if wire_code == 0:
        return if_zero
    return _CODES.get(wire_code, grpc.StatusCode.UNKNOWN)


def error_from_wire(wire_code, message, exception_type="", task_id=0):
    """The exception for a task error or rejection of the service (a TaskError fields' values)."""
    code = status_code(wire_code)
    if code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith(_BROKEN_PREFIX):
        return BrokenExecutor(message)
    return TaskError(code, message, exception_type, task_id)
