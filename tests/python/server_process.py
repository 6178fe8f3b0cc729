"""ServerProcess: a real mpigate-server for the Python tests, started as tests/server_process.cc
starts one for the C++ tests.

    server = ServerProcess(workers=2, flags=["--max-tasks-per-worker=1"])
    server.start()        # returns once the server printed its ready line
    ... mpigate.Executor(server.target) ...
    exit_code, stderr_text = server.stop()   # SIGTERM, then waits for every process it started

The server listens on a Unix socket in a new directory under /tmp (socket paths are limited to 107
bytes, too few for Bazel's test directories). This process becomes a child subreaper, so that the
MPI daemon and workers the server spawns are reparented to it; stop() waits for every child to
end, leaving no process behind. So one ServerProcess at a time runs in a process.

Thread-safety: start() and stop() are called by the test's main thread only.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile

_PR_SET_CHILD_SUBREAPER = 36


def runfile(relative):
    """The path of a runfile of this test, e.g. "server/mpigate-server"."""
    return os.path.join(os.environ["TEST_SRCDIR"], os.environ.get("TEST_WORKSPACE", "mpigate"),
                        relative)


class ServerProcess:
    """One mpigate-server process and what it spawns."""

    # The one running, if any: stop() waits for every child of this process.
    _running = None

    def __init__(self, workers=2, flags=()):
        self._workers = workers
        self._flags = list(flags)
        self._process = None
        self._server_pid = None
        self.dir = None
        self.target = None
        self.endpoint_file = None

    def start(self):
        """Starts the server and waits for its ready line; raises RuntimeError if it exits first."""
        if ServerProcess._running is not None:
            raise RuntimeError("another ServerProcess runs: stop it first (stop() waits for every "
                               "child of this process)")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.dir = tempfile.mkdtemp(prefix="mpigate-pytest-", dir="/tmp")
        self.target = f"unix:{self.dir}/s.sock"
        self.endpoint_file = os.path.join(self.dir, "endpoint")
        args = [
            runfile("server/mpigate-server"),
            f"--workers={self._workers}",
            f"--listen={self.target}",
            f"--endpoint-file={self.endpoint_file}",
            f"--worker-binary={runfile('worker/mpigate-worker')}",
        ] + self._flags
        # Built against MPICH, which cannot spawn (server/mpi_library.h), the pool runs in world
        # mode under the build's own launcher, with the same workers.
        family, mpiexec = subprocess.run(
            [runfile("server/mpigate-server"), "--mpi_launcher"], check=True,
            capture_output=True, text=True).stdout.split()
        if family != "openmpi":
            args = [mpiexec, "-n", str(self._workers + 1)] + args + ["--world"]
        # stdout is a pipe to read the ready line from; stderr goes to a file, so that however
        # much the server and its workers print, nothing blocks on a full pipe.
        with open(os.path.join(self.dir, "stderr"), "wb") as stderr:
            self._process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        ServerProcess._running = self
        seen = []
        for line in self._process.stdout:
            seen.append(line.decode(errors="replace"))
            if b"mpigate-server: ready" in line:
                # Under mpiexec, the process to signal is the server, not the launcher.
                self._server_pid = int(line.rsplit(b", pid ", 1)[1])
                return
        _, stderr_text = self.stop(signal.SIGKILL)
        raise RuntimeError(f"mpigate-server did not become ready: {''.join(seen)}{stderr_text}")

    @property
    def pid(self):
        """The server's pid, while it runs."""
        return self._process.pid

    def stop_checked(self):
        """stop() with SIGTERM; raises AssertionError, with the server's stderr, unless it exited
        0 (a test's teardown: a clean stop is part of what every test checks)."""
        exit_code, stderr_text = self.stop()
        if exit_code != 0:
            raise AssertionError(f"mpigate-server exited with {exit_code}:\n{stderr_text}")

    def stop(self, signal_number=signal.SIGTERM):
        """Signals the server, waits for it and for every process it left; returns its exit code
        (negative: the signal that ended it) and what it printed on stderr."""
        if self._server_pid is None:
            self._process.send_signal(signal_number)
        else:
            os.kill(self._server_pid, signal_number)
        self._server_pid = None
        exit_code = self._process.wait()
        self._process.stdout.close()
        self._process = None
        ServerProcess._running = None
        # Every descendant still alive is now our child: wait for each to end on its own.
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        with open(os.path.join(self.dir, "stderr"), encoding="utf-8", errors="replace") as file:
            stderr_text = file.read()
        shutil.rmtree(self.dir, ignore_errors=True)
        return exit_code, stderr_text
