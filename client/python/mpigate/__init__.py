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
from mpigate._endpoint import resolve_endpoint
from mpigate._errors import BrokenExecutor, ConnectionLost, TaskError
from mpigate._executor import Executor
from mpigate._future import Future, Progress

__all__ = [
    "BrokenExecutor",
    "ConnectionLost",
    "Executor",
    "Future",
    "Progress",
    "TaskError",
    "resolve_endpoint",
]
