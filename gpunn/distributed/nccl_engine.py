"""NCCL through CuPy (cupy.cuda.nccl) for arrays on a GPU: one communicator per process group.

The unique id is made on rank 0 and broadcast over MPI as a plain byte buffer (no pickle). Every
collective runs on a side stream that first waits for the work already queued on the current
stream; the returned handle is an event, which `Work.wait` makes the current stream wait on (no
host synchronisation: backward keeps running while the reduction is in flight, and the update is
queued behind it). A dead peer is still caught within the timeout: every data-parallel step also
agrees over MPI on whether its loss was finite. Unmeasured here:
this machine and CI have no GPU; it runs only when a device is lent.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _nccl() -> Any:
    try:
        from cupy.cuda import nccl  # noqa: PLC0415 - CuPy only on a GPU machine
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


def available() -> bool:
    """Whether CuPy's NCCL bindings import here."""
    return _nccl() is not None


def usable(a: Any) -> bool:
    """A CuPy array, and NCCL present."""
    return type(a).__module__.startswith("cupy") and available()


class _Engine:
    def __init__(self, world: Any) -> None:
        import cupy  # noqa: PLC0415

        nccl = _nccl()
        uid = np.zeros(128, dtype=np.int64)  # ncclUniqueId is 128 bytes; CuPy gives them as 128 ints
        if world.rank == 0:
            uid[:] = np.asarray(nccl.get_unique_id(), dtype=np.int64)
        if world.comm is not None:  # a world of one (a test, one GPU) needs no broadcast
            world.wait(world.comm.Ibcast(uid, root=0), "gpunn.distributed: NCCL unique id")
        self.nccl, self.cupy = nccl, cupy
        self.comm = nccl.NcclCommunicator(world.size, tuple(int(v) for v in uid), world.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.int64): nccl.NCCL_INT64,
                      np.dtype(np.int32): nccl.NCCL_INT32}
        self.ops = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    def dtype(self, a: Any) -> Any:
        kind = self.types.get(np.dtype(a.dtype))
        if kind is None:
            raise TypeError(f"gpunn.distributed: NCCL cannot reduce dtype {a.dtype}; expected one of "
                            f"{sorted(str(d) for d in self.types)}")
        return kind

    def launch(self, fn: Any) -> Any:
        cupy = self.cupy
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(cupy.cuda.get_current_stream())
        self.stream.wait_event(ready)
        fn(self.stream.ptr)
        done = cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return _EventRequest(done, cupy)


class _EventRequest:
    """Looks like an MPI request to World.wait: Test() polls the event; on completion the current
    stream is made to wait on it (a no-op by then, but it orders later work)."""

    def __init__(self, event: Any, cupy: Any) -> None:
        self.event, self.cupy = event, cupy

    def Test(self) -> bool:  # noqa: N802 - mirrors mpi4py's Request.Test
        if self.event.done:
            self.order()
            return True
        return False

    def order(self) -> None:
        """Make the current stream wait for the reduction, without blocking the host."""
        self.cupy.cuda.get_current_stream().wait_event(self.event)


def _engine(world: Any) -> _Engine:
    if world.nccl is None:
        world.nccl = _Engine(world)
    return world.nccl


def all_reduce(world: Any, a: Any, op: str) -> Any:
    e = _engine(world)
    return e.launch(lambda s: e.comm.allReduce(a.data.ptr, a.data.ptr, a.size, e.dtype(a), e.ops[op], s))


def broadcast(world: Any, a: Any, src: int) -> Any:
    e = _engine(world)
    return e.launch(lambda s: e.comm.bcast(a.data.ptr, a.size, e.dtype(a), src, s))

