"""How a client finds a running mpigate service, as the C++ client does (common/endpoint.h).

In order: an explicit endpoint, $MPIGATE_ENDPOINT, or the endpoint file the server writes once it
serves ($MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint, the run directory being $MPIGATE_RUN_DIR,
else /tmp/mpigate-<uid>). An empty variable counts as unset.

The endpoint file holds the target on its first line, then `key=value` lines: `token=...` when the
service listens on TCP (every call must carry it as `authorization: Bearer <token>` metadata) and
`tls=1` when it serves TLS. resolve_access() adds how to authenticate and encrypt, as the C++
client's ResolveConnection (common/access.h) does.

Thread-safety: pure functions over the environment and the file system.
"""

import collections
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


Access = collections.namedtuple("Access", ["target", "token", "tls", "root_certificates",
                                           "certificate_chain", "private_key"])
Access.__doc__ = """A service resolved for dialing: its target, the bearer token to send (None: none),
whether to speak TLS and, as bytes or None, the PEM of the CA to trust (None: the system's roots)
and of the client certificate and its key."""


def resolve_access(endpoint=None, token=None, tls_ca=None, tls_cert=None, tls_key=None):
    """An Access for the service resolve_endpoint() finds.

    The token: `token`, else $MPIGATE_TOKEN, else the endpoint file's when the target came from it.
    TLS when the endpoint file says `tls=1` or a CA is given: `tls_ca`, else $MPIGATE_TLS_CA. A
    client certificate and key for a service that requires one: `tls_cert` and `tls_key`, else
    $MPIGATE_TLS_CERT and $MPIGATE_TLS_KEY. Each PEM is given as its text or a file's path.

    Raises ConnectionError if no endpoint is known, ValueError for a certificate without its key
    (or a key without its certificate) or a file that holds no PEM, FileNotFoundError for a PEM
    file that is not there.
    """
    token = token or _env("MPIGATE_TOKEN")
    if endpoint or _env("MPIGATE_ENDPOINT"):
        target, keys = resolve_endpoint(endpoint), {}
    else:
        target, keys = _resolve_from_file()
        token = token or keys.get("token")
    tls_ca = tls_ca or _env("MPIGATE_TLS_CA")
    tls_cert = tls_cert or _env("MPIGATE_TLS_CERT")
    tls_key = tls_key or _env("MPIGATE_TLS_KEY")
    tls = keys.get("tls") == "1" or tls_ca is not None
    if not tls:
        return Access(target, token or None, False, None, None, None)
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("a TLS client certificate needs its key, and a key its certificate "
                         "(tls_cert/tls_key, MPIGATE_TLS_CERT/_KEY)")
    return Access(target, token or None, True, _read_pem(tls_ca, "TLS CA certificate"),
                  _read_pem(tls_cert, "TLS client certificate"),
                  _read_pem(tls_key, "TLS client key"))


def _read_pem(path_or_pem, what):
    """The bytes of PEM given as itself (it holds "-----BEGIN") or as a file's path; None for
    None. As common/access.cc's ReadPem: FileNotFoundError for a file that is not there,
    ValueError for one that holds no PEM."""
    if path_or_pem is None:
        return None
    if "-----BEGIN" in path_or_pem:
        return path_or_pem.encode()
    try:
        with open(path_or_pem, "rb") as file:
            pem = file.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no file {path_or_pem}") from None
    if b"-----BEGIN" not in pem:
        raise ValueError(f"{what} {path_or_pem} holds no PEM")
    return pem


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
