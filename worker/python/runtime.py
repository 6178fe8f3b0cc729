"""The Python half of the workers' Python task runtime (libmpigate_python.so embeds this file and
imports it as `_mpigate_runtime`, once per process, after the wire format module as
`_mpigate_python_task`). The C++ half calls `start` once and then `run` for each task, holding the
GIL, on the thread that runs the task.
"""

import os
import signal
import sys

import _mpigate_python_task as _task


def start(own_sigint):
    """Makes the embedded interpreter look like a normal one to the code it runs. `own_sigint`:
    this process is a task runner whose tasks run on this (Python's main) thread, so SIGINT is
    how an interrupt reaches them (KeyboardInterrupt, even inside time.sleep)."""
    executable = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}."
                              f"{sys.version_info[1]}")
    if os.access(executable, os.X_OK):
        # multiprocessing and subprocess users expect a Python here, not the runner's binary.
        sys.executable = executable
    if not sys.argv:
        sys.argv = [""]
    if own_sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def sync_environ(entries):
    """Makes os.environ the process's environment again (`entries`: its NAME=VALUE byte strings):
    the runner changes the C library's environment between tasks of different executors, and
    os.environ is a copy taken when Python started."""
    data = os.environ._data  # the encoded mapping behind os.environ and os.environb
    data.clear()
    for entry in entries:
        name, _, value = entry.partition(b"=")
        data[name] = value


def run(payload):
    """The outcome parts of the task in `payload`, a memoryview of memory the worker frees after
    the task. A payload with out-of-band buffers is copied first: values decoded from its buffers
    alias them and may outlive the task (in a cache, a global). Without buffers, unpickling
    copies everything it keeps."""
    if payload.nbytes >= 8 and (payload[6] or payload[7]):
        payload = bytes(payload)
    return _task.run_payload(payload)
