"""PrivateService: an mpigate-server of one executor's own, for when no service is running.

    service = PrivateService.start(workers=4)   # returns once the pool serves
    ... mpigate sessions to service.target ...
    service.stop()                              # SIGTERM, then waits: no process left

As mpi4py.futures spawns its workers, an MPIPoolExecutor that finds no service starts one for its
lifetime: `mpigate-server --workers N` listening on a Unix socket in a private run directory (mode
0700, made with mkdtemp; the server's own run directory too, through $MPIGATE_RUN_DIR), which no
other client finds. The server runs under _watchdog.py, which stops it when the pipe to it closes:
at stop(), at this process's exit (atexit) and when this process dies without either.

The binary: $MPIGATE_SERVER, else `mpigate-server` on PATH, else the one of the build tree or Bazel
runfiles that holds this package (bazel-bin/server/mpigate-server of the workspace holding
client/python, or server/mpigate-server beside client/python in runfiles).

Thread-safety: start() may be called from any thread; stop() is idempotent and thread-safe.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref

_READY = b"mpigate-server: ready"

# The services of this process not stopped yet, stopped at exit.
_running = weakref.WeakSet()


def find_server():
    """The mpigate-server binary to start; FileNotFoundError saying where it looked."""
    explicit = os.environ.get("MPIGATE_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise FileNotFoundError(f"$MPIGATE_SERVER={explicit} is not an executable file")
        return explicit
    on_path = shutil.which("mpigate-server")
    if on_path:
        return on_path
    # <root>/client/python/mpigate/futures/_private.py: <root> is a workspace or a runfiles tree.
    root = os.path.dirname(os.path.abspath(__file__))
    for _ in range(4):
        root = os.path.dirname(root)
    candidates = [os.path.join(root, "bazel-bin", "server", "mpigate-server"),
                  os.path.join(root, "server", "mpigate-server")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "no mpigate service is running and no mpigate-server to start one: set MPIGATE_SERVER, "
        "put mpigate-server on PATH, or build it (bazel build //server:mpigate-server); looked "
        f"in {', '.join(candidates)}. Or start a service and set MPIGATE_ENDPOINT")


class PrivateService:
    """One private mpigate-server; see the module docstring."""

    def __init__(self, process, run_dir, target):
        self._process = process  # the watchdog
        self._run_dir = run_dir
        self.target = target
        self._lock = threading.Lock()
        self._stopped = False  # guarded by _lock

    @classmethod
    def start(cls, workers=None, extra_flags=()):
        """Starts a server of `workers` workers (None: the server's default) and returns once it
        serves. Raises FileNotFoundError without a binary, RuntimeError (with the server's
        stderr) if it exits before it serves."""
        binary = find_server()
        run_dir = tempfile.mkdtemp(prefix="mpigate-futures-")
        target = f"unix:{run_dir}/gateway.sock"
        args = [binary, f"--listen={target}", f"--endpoint-file={run_dir}/endpoint"]
        if workers is not None:
            args.append(f"--workers={workers}")
        args.extend(extra_flags)
        env = dict(os.environ, MPIGATE_RUN_DIR=run_dir)
        # The service's own settings must not come from the client's search for one.
        for name in ("MPIGATE_ENDPOINT", "MPIGATE_ENDPOINT_FILE"):
            env.pop(name, None)
        watchdog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_watchdog.py")
        stderr_path = os.path.join(run_dir, "stderr")
        with open(stderr_path, "wb") as stderr:
            # The server's stderr (its log and its workers') goes to a file, never a full pipe.
            process = subprocess.Popen([sys.executable, watchdog] + args, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr, env=env,
                                       start_new_session=True)
        service = cls(process, run_dir, target)
        _running.add(service)
        seen = []
        for line in process.stdout:
            if line.startswith(_READY):
                return service
            seen.append(line.decode(errors="replace"))
        # Its stdout ended: the server is gone, and so is the watchdog or it soon is.
        status = service._process.wait()
        with open(stderr_path, encoding="utf-8", errors="replace") as file:
            stderr_text = file.read()
        service.stop()
        raise RuntimeError(f"the private mpigate-server ({binary}) exited with status {status} "
                           f"before it served: {''.join(seen)}{stderr_text}")

    def stop(self):
        """Stops the server (SIGTERM through the watchdog) and waits for it and its workers;
        returns the watchdog's exit status. Safe to call more than once."""
        with self._lock:  # held throughout: a second caller returns once the server is gone
            if not self._stopped:
                self._stopped = True
                self._process.stdin.close()  # end of file: the watchdog stops the server
                self._process.wait()
                self._process.stdout.close()
                shutil.rmtree(self._run_dir, ignore_errors=True)
                _running.discard(self)
            return self._process.returncode


@atexit.register
def _stop_all():
    for service in list(_running):
        service.stop()
