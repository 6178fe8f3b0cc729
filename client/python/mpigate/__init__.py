"""mpigate: the Python client of an mpigate service (a persistent MPI worker pool behind gRPC).

    import mpigate

    with mpigate.Executor() as executor:
        executor.submit("echo", b"hello").result()                   # b"hello"
        list(executor.map("echo", [b"a", b"b", b"c"], chunksize=2))  # [b"a", b"b", b"c"]

Executor and Future follow concurrent.futures (see _executor.py and _future.py); failed tasks raise
TaskError, a broken pool BrokenExecutor (a concurrent.futures.BrokenExecutor), a broken stream
ConnectionLost. The gRPC stubs of proto/mpigate/v1 are generated at build time into the subpackage
mpigate.v1 (client/python/BUILD.bazel).
"""

import pkgutil

# Outside Bazel's runfiles the generated mpigate.v1 lives in another directory of sys.path
# (bazel-bin/client/python): let this package span both.
__path__ = pkgutil.extend_path(__path__, __name__)

# pylint: disable=wrong-import-position
from mpigate import _endpoint, _status
from mpigate._endpoint import resolve_endpoint
from mpigate._errors import BrokenExecutor, ConnectionLost, TaskError
from mpigate._executor import Executor
from mpigate._future import Future, Progress


def status(endpoint=None, *, token=None, tls_ca=None, tls_cert=None, tls_key=None, timeout=10.0):
    """The pool's status (a PoolStatus message) on a connection of its own, as
    Executor.status(), for the service found as Executor() finds it (same arguments). Raises
    ConnectionError if it cannot be asked."""
    return _status.pool_status(_endpoint.resolve_access(endpoint, token, tls_ca, tls_cert, tls_key),
                               timeout)


__all__ = [
    "BrokenExecutor",
    "ConnectionLost",
    "Executor",
    "Future",
    "Progress",
    "TaskError",
    "resolve_endpoint",
    "status",
]
