"""The process group: which rank this process is, how many there are, and how they talk.

One process per device, started by `mpiexec -n N` (or any launcher MPI understands, such as
Slurm's `srun`). `init()` joins the group through MPI (mpi4py); in a process that no launcher
started it is a no-op and the world is this one process, so the same script runs alone or
data-parallel. MPI is imported only by `init()` in a launched process, never by `import gpunn`.

Faults end the job, they never hang it:
- every collective is started non-blocking and waited for with a deadline (`timeout`, seconds;
  `init(timeout=...)` or the environment variable GPUNN_DIST_TIMEOUT, default 300). A rank that
  died, hung or stopped calling collectives makes the others raise DistributedTimeoutError, naming
  the operation, within that time;
- an exception that escapes on any rank of a group of several prints its traceback and aborts the
  whole job (MPI_Abort), so the other ranks stop at once instead of waiting out the timeout;
- a process that dies outright (a signal, the out-of-memory killer) is seen by mpiexec, which
  ends the others.

No pickle: only buffers travel (mpi4py's upper-case methods), never mpi4py's lower-case
object methods, which pickle.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from gpunn._checks import positive_real
from gpunn.errors import DistributedError, DistributedTimeoutError

DEFAULT_TIMEOUT = 300.0
# world-size variables that launchers set in every process they start: MPICH/Hydra and Intel MPI
# (PMI_SIZE), Open MPI, MVAPICH, PMIx (Slurm's srun --mpi=pmix)
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for var in names:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return default


def launched_size() -> int:
    """The world size a launcher announced in the environment; 1 when no launcher started us."""
    return _first_int(_SIZE_VARS, 1)


def launched_rank() -> int:
    return _first_int(_RANK_VARS, 0)


class World:
    """The joined group: `rank`, `size`, the MPI communicator (None alone) and the deadline."""

    def __init__(self, comm: Any, mpi: Any, timeout: float) -> None:
        self.comm, self.mpi, self.timeout = comm, mpi, timeout
        self.rank = 0 if comm is None else int(comm.Get_rank())
        self.size = 1 if comm is None else int(comm.Get_size())
        self.nccl: Any = None  # made on first use by a CuPy array (collectives._nccl)

    def wait(self, request: Any, op: str) -> None:
        """Wait for a non-blocking MPI request, at most `timeout` seconds; polls with a short
        back-off so a waiting rank neither spins a core nor adds much latency."""
        if request.Test():
            return
        deadline = time.monotonic() + self.timeout
        pause = 1e-6
        while not request.Test():
            if time.monotonic() > deadline:
                raise DistributedTimeoutError(
                    f"gpunn.distributed: rank {self.rank} of {self.size}: {op} did not complete within "
                    f"{self.timeout:g} s; another rank died, hung or stopped calling collectives (set the limit "
                    "with gpunn.distributed.init(timeout=...) or GPUNN_DIST_TIMEOUT)")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def abort(self, code: int = 1) -> None:
        if self.comm is not None:
            self.comm.Abort(code)


_world: World | None = None


def _timeout_setting(timeout: float | None) -> float:
    if timeout is not None:
        return positive_real(timeout, "timeout", "gpunn.distributed.init", numpy=False)
    env = os.environ.get("GPUNN_DIST_TIMEOUT")
    if env is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(env)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"gpunn.distributed: the environment variable GPUNN_DIST_TIMEOUT must be a number of "
                               f"seconds > 0, got {env!r}")
    return value


def _abort_on_uncaught(world: World) -> None:
    """On several ranks, an exception that ends one rank's program aborts the job (see module doc)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(f"gpunn.distributed: rank {world.rank} of {world.size} raised; aborting every rank\n")
        traceback.print_exception(kind, exc, tb, file=sys.stderr)
        sys.stderr.flush()
        world.abort(1)
        previous(kind, exc, tb)

    sys.excepthook = hook


def init(timeout: float | None = None) -> World:
    """Join the process group (once; later calls return it). Alone - no launcher - the world is
    this process, and every collective returns its input. Under a launcher without mpi4py it
    raises DistributedError saying what to install."""
    global _world
    if _world is not None:
        return _world
    wait = _timeout_setting(timeout)
    if launched_size() <= 1:
        _world = World(None, None, wait)
        return _world
    try:
        from mpi4py import MPI  # noqa: PLC0415 - MPI starts only in a launched process
    except ImportError as exc:
        raise DistributedError(
            f"gpunn.distributed: this process was started by an MPI launcher as rank {launched_rank()} of "
            f"{launched_size()}, but mpi4py is not installed ({exc}); install it with: pip install 'gpunn[mpi]' "
            "(mpi4py and the mpich wheel; a system MPI works too)") from None
    _world = World(MPI.COMM_WORLD, MPI, wait)
    if _world.size > 1:
        _abort_on_uncaught(_world)
    return _world


def world() -> World:
    """The joined world, joining it first if needed."""
    return _world if _world is not None else init()


def is_initialized() -> bool:
    return _world is not None


def rank() -> int:
    """This process's rank, 0 .. world_size() - 1 (0 alone)."""
    return world().rank


def world_size() -> int:
    """How many processes train together (1 alone)."""
    return world().size


def is_main() -> bool:
    """Whether this is rank 0, the one that prints, logs and writes checkpoints."""
    return world().rank == 0


def set_timeout(timeout: float) -> None:
    """Change the deadline of every later collective (seconds > 0)."""
    world().timeout = positive_real(timeout, "timeout", "gpunn.distributed.set_timeout", numpy=False)
