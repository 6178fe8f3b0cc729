"""mpigate.futures: mpi4py.futures on an mpigate pool. A script switches by one import:

    from mpigate.futures import MPIPoolExecutor     # was: from mpi4py.futures import ...

MPIPoolExecutor (_pool.py) runs Python callables on the workers of the mpigate service the client
finds, shared with other clients, or of a private mpigate-server it starts when none runs;
MPICommExecutor and get_comm_workers (_comm.py) as in mpi4py.futures. concurrent.futures' names
are re-exported, as mpi4py.futures does: futures are concurrent.futures.Future instances.
"""

from concurrent.futures import (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, BrokenExecutor,
                                CancelledError, Executor, Future, InvalidStateError, TimeoutError,
                                as_completed, wait)

from mpigate.futures._comm import MPICommExecutor, get_comm_workers
from mpigate.futures._pool import MPIPoolExecutor

__all__ = [
    "ALL_COMPLETED",
    "BrokenExecutor",
    "CancelledError",
    "Executor",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Future",
    "InvalidStateError",
    "MPICommExecutor",
    "MPIPoolExecutor",
    "TimeoutError",
    "as_completed",
    "get_comm_workers",
    "wait",
]
