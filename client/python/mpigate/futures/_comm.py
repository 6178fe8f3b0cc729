"""MPICommExecutor and get_comm_workers(): mpi4py.futures' communicator-facing parts.

MPICommExecutor(comm, root) is a context manager whose target is an MPIPoolExecutor on the root
rank of `comm` and None on the other ranks, as in mpi4py.futures; with mpigate the pool is the
service's (or a private one), so the other ranks do not serve as workers: they skip the with
block's executor work and go on. Without mpi4py (Debian's python3-mpi4py), comm must be None and
root 0, and every process is a root.

get_comm_workers() is for code running as a task on the pool: in a gang task (submit(...,
gang_size=k)) it returns an mpi4py Intracomm of the gang's k ranks; it asks the worker's Python
runtime (libmpigate_python), whose built-in module _mpigate_worker exists only there. Anywhere
else it raises RuntimeError: in a plain task (the runtime's error) and outside the pool.

Thread-safety: MPICommExecutor is used as a context manager by one thread; get_comm_workers() may
be called by any thread of a task.
"""

import importlib

from mpigate.futures import _pool

# The module the workers' Python runtime provides (worker/python), present only there.
_RUNTIME_MODULE = "_mpigate_worker"


def get_comm_workers():
    """The mpi4py communicator of the gang running the current task; RuntimeError elsewhere."""
    try:
        runtime = importlib.import_module(_RUNTIME_MODULE)
    except ImportError:
        raise RuntimeError("get_comm_workers() works only in a task running on mpigate's "
                           "workers (a gang task: submit(fn, ..., gang_size=k))") from None
    return runtime.comm_workers()


class MPICommExecutor:
    """Context manager: an MPIPoolExecutor on the root rank of `comm`, None on the others.

    Args:
      comm: an mpi4py intracommunicator; None: MPI.COMM_WORLD (or, without mpi4py, none).
      root: the rank that gets the executor.
      kwargs: MPIPoolExecutor's arguments.

    Raises ValueError for an intercommunicator or a root outside range(comm.size).
    """

    def __init__(self, comm=None, root=0, **kwargs):
        try:
            from mpi4py import MPI  # pylint: disable=import-outside-toplevel
        except ImportError:
            if comm is not None:
                raise ValueError("a communicator needs mpi4py, which cannot be imported")
            if root != 0:
                raise ValueError("without mpi4py there is one process: root must be 0")
            self._is_root = True
        else:
            if comm is None:
                comm = MPI.COMM_WORLD
            if comm.Is_inter():
                raise ValueError("expecting an intracommunicator")
            if root < 0 or root >= comm.Get_size():
                raise ValueError("expecting root in range(comm.size)")
            self._is_root = comm.Get_rank() == root
        self._options = kwargs
        self._entered = False
        self._executor = None

    def __enter__(self):
        if self._entered:
            raise RuntimeError("MPICommExecutor is already entered")
        self._entered = True
        if self._is_root:
            self._executor = _pool.MPIPoolExecutor(**self._options)
        return self._executor

    def __exit__(self, *exc_info):
        executor, self._executor = self._executor, None
        self._entered = False
        if executor is not None:
            executor.shutdown(wait=True)
        return False
