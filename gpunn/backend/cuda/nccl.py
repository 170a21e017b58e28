"""NCCL through CuPy (cupy.cuda.nccl): the device transport of gpunn.distributed, kept here because
only the backend layer knows CuPy.

A `Communicator` joins `size` processes; the caller supplies how its 128-byte unique id, made on
rank 0, reaches the others (gpunn.distributed broadcasts it over MPI as a plain buffer: no
pickle). Every collective runs on a side stream that first waits for the work already queued on
the current stream; the returned handle is an event: `Test()` polls it (what World.wait calls),
`order()` makes the current stream wait on it without blocking the host, so backward keeps running
while a reduction is in flight and the update is queued behind it. Unmeasured here: this machine
and CI have no GPU; it runs only when a device is lent.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
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


def status() -> str:
    """One line for `python -m gpunn info`: the NCCL version, or what is missing."""
    if importlib.util.find_spec("cupy") is None:
        return "no CuPy: pip install 'gpunn[cuda12]' (or cuda13) on a machine with an NVIDIA GPU"
    try:
        nccl = _nccl()
        return f"NCCL {nccl.get_version()}" if nccl is not None else "CuPy has no NCCL: install the nvidia-nccl wheel"
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable", said in words
        return f"not usable: {exc}"


class Communicator:
    """The NCCL communicator of one process among `size`. `share_uid(uid)` must fill `uid` (128
    int64) on every rank with rank 0's values; it is not called in a world of one."""

    def __init__(self, rank: int, size: int, share_uid: Callable[[np.ndarray], None]) -> None:
        import cupy  # noqa: PLC0415 - only on a GPU machine, when a CuPy array is first reduced

        nccl = _nccl()
        uid = np.zeros(128, dtype=np.int64)  # ncclUniqueId is 128 bytes; CuPy gives them as 128 ints
        if rank == 0:
            uid[:] = np.asarray(nccl.get_unique_id(), dtype=np.int64)
        if size > 1:
            share_uid(uid)
        self.nccl, self.cupy = nccl, cupy
        self.comm = nccl.NcclCommunicator(size, tuple(int(v) for v in uid), rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.int64): nccl.NCCL_INT64,
                      np.dtype(np.int32): nccl.NCCL_INT32}
        self.ops = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    def dtype(self, a: Any) -> Any:
        kind = self.types.get(np.dtype(a.dtype))
        if kind is None:
            raise TypeError(f"NCCL cannot reduce dtype {a.dtype}; expected one of "
                            f"{sorted(str(d) for d in self.types)}")
        return kind

    def launch(self, fn: Callable[[int], Any]) -> EventRequest:
        cupy = self.cupy
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(cupy.cuda.get_current_stream())
        self.stream.wait_event(ready)
        fn(self.stream.ptr)
        done = cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return EventRequest(done, cupy)


    def all_reduce(self, a: Any, op: str) -> EventRequest:
        """Reduce the CuPy array `a` in place across the communicator ("sum", "mean" sums, "max", "min")."""
        return self.launch(lambda s: self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self.dtype(a),
                                                         self.ops[op], s))

    def broadcast(self, a: Any, src: int) -> EventRequest:
        return self.launch(lambda s: self.comm.bcast(a.data.ptr, a.size, self.dtype(a), src, s))


class EventRequest:
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

