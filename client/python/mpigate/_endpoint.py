"""How a client finds a running mpigate service, as the C++ client does (common/endpoint.h).

In order: an explicit endpoint, $MPIGATE_ENDPOINT, or the endpoint file the server writes once it
serves ($MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint, the run directory being $MPIGATE_RUN_DIR,
else /tmp/mpigate-<uid>). An empty variable counts as unset.

The endpoint file holds the target on its first line, then `key=value` lines: `token=...` when the
service listens on TCP (every call must carry it as `authorization: Bearer <token>` metadata) and
`tls=1` when it serves TLS.

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


def _read_endpoint_file(path):
    """(target, {key: value}) from an endpoint file; target None if the file holds none."""
    with open(path, encoding="utf-8") as file:
        lines = [line.strip() for line in file.read().splitlines() if line.strip()]
    if not lines:
        return None, {}
    keys = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    return lines[0], keys


def resolve_access(endpoint=None, token=None):
    """(target, token) to connect with: the target as resolve_endpoint() finds it, and the bearer
    token: `token`, else $MPIGATE_TOKEN, else the endpoint file's when the target came from it
    (None if there is none)."""
    token = token or _env("MPIGATE_TOKEN")
    if endpoint or _env("MPIGATE_ENDPOINT"):
        return resolve_endpoint(endpoint), token
    target, keys = _resolve_from_file()
    return target, token or keys.get("token") or None


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
    return _resolve_from_file()[0]


def _resolve_from_file():
    path = default_endpoint_file()
    try:
        target, keys = _read_endpoint_file(path)
    except FileNotFoundError:
        reason = f"no endpoint file at {path}"
    else:
        if target:
            return target, keys
        reason = f"endpoint file {path} is empty"
    raise ConnectionError(
        f"no mpigate service found: {reason}. Start mpigate-server, or set MPIGATE_ENDPOINT or "
        "MPIGATE_ENDPOINT_FILE")
