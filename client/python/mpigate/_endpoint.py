"""How a client finds a running mpigate service, as the C++ client does (common/endpoint.h).

In order: an explicit endpoint, $MPIGATE_ENDPOINT, or the endpoint file the server writes once it
serves ($MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint, the run directory being $MPIGATE_RUN_DIR,
else /tmp/mpigate-<uid>). An empty variable counts as unset.

Thread-safety: pure functions over the environment and the file system.
"""

import os


def _env(name):
    return os.environ.get(name) or None


def default_run_dir():
    """$MPIGATE_RUN_DIR, else /tmp/mpigate-<uid>."""
    return _env("MPIGATE_RUN_DIR") or f"/tmp/mpigate-{os.getuid()}"


def default_endpoint_file():
    """$MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint."""
    return _env("MPIGATE_ENDPOINT_FILE") or os.path.join(default_run_dir(), "endpoint")


def resolve_endpoint(endpoint=None):
    """The gRPC target to connect to, e.g. "unix:/tmp/mpigate-0/gateway.sock" or "node12:50051".

    Raises ConnectionError, saying what to do, when neither the arguments nor the environment nor
    an endpoint file give one.
    """
    if endpoint:
        return endpoint
    from_env = _env("MPIGATE_ENDPOINT")
    if from_env:
        return from_env
    path = default_endpoint_file()
    try:
        with open(path, encoding="utf-8") as file:
            target = file.read().strip()
    except FileNotFoundError:
        reason = f"no endpoint file at {path}"
    else:
        if target:
            return target
        reason = f"endpoint file {path} is empty"
    raise ConnectionError(
        f"no mpigate service found: {reason}. Start mpigate-server, or set MPIGATE_ENDPOINT or "
        "MPIGATE_ENDPOINT_FILE")
