"""all_reduce, broadcast, barrier and a few small agreements, on whatever the array lives on.

Host arrays (NumPy) travel through MPI; CuPy arrays through NCCL when CuPy has it (gpunn/backend/cuda/nccl.py),
else through the host and MPI. Alone (world size 1) every call returns its input untouched.
Collectives work in place, as torch.distributed's do: `all_reduce(a)` leaves the sum in `a`.
`all_reduce_async` returns a `Work` to `wait()` on later, so a caller can overlap it with compute.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpunn.backend.cuda import nccl
from gpunn.distributed.world import World, world

OPS = ("sum", "mean", "max", "min")


def _check(a: Any, where: str, name: str = "a") -> None:
    if not hasattr(a, "dtype") or not hasattr(a, "flags") or not hasattr(a, "shape"):
        raise TypeError(f"{where}: argument '{name}' must be a NumPy or CuPy array, got {type(a).__name__}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{where}: argument '{name}' must be C-contiguous (it is reduced in place as one buffer); "
                         "pass an ascontiguousarray copy")
    if not getattr(a.flags, "writeable", True):
        raise ValueError(f"{where}: argument '{name}' is written in place and must be writable")
    if np.dtype(a.dtype).kind not in "fiub":
        raise TypeError(f"{where}: argument '{name}' must hold numbers, got dtype {a.dtype}")


def _check_op(op: str, a: Any, where: str) -> None:
    if op not in OPS:
        raise ValueError(f"{where}: argument 'op' must be one of {OPS}, got {op!r}")
    if op == "mean" and np.dtype(a.dtype).kind != "f":
        raise TypeError(f"{where}: op='mean' needs a floating-point array, got dtype {a.dtype}")


def _mpi_op(w: World, op: str) -> Any:
    mpi = w.mpi
    return {"sum": mpi.SUM, "mean": mpi.SUM, "max": mpi.MAX, "min": mpi.MIN}[op]


class Work:
    """A collective in flight: `wait()` finishes it (and applies a mean's scaling), `done()` polls."""

    def __init__(self, w: World, a: Any, op_name: str, request: Any = None, finish: Any = None) -> None:
        self._world, self.array, self._op = w, a, op_name
        self._request, self._finish = request, finish
        self._finished = request is None and finish is None

    def done(self) -> bool:
        """Whether the transfer has completed (it still needs `wait()` to finish)."""
        return self._finished or self._request is None or bool(self._request.Test())

    def wait(self) -> Any:
        """Block (at most the group's timeout) until complete; returns the array. A reduction on
        NCCL does not block the host: later work on the current stream is ordered after it."""
        if not self._finished:
            if hasattr(self._request, "order"):
                self._request.order()  # NCCL: the current stream waits on the GPU; the host goes on
            elif self._request is not None:
                self._world.wait(self._request, self._op)
            if self._finish is not None:
                self._finish()
            self._finished = True
        return self.array


def all_reduce_async(a: Any, op: str = "sum") -> Work:
    """Start reducing `a` in place across ranks with `op` ("sum", "mean", "max" or "min")."""
    where = "gpunn.distributed.all_reduce"
    _check(a, where)
    _check_op(op, a, where)
    w = world()
    if w.size == 1:
        return Work(w, a, where)
    scale = (lambda: a.__imul__(a.dtype.type(1.0 / w.size))) if op == "mean" else None
    if isinstance(a, np.ndarray):
        request = w.comm.Iallreduce(w.mpi.IN_PLACE, a, op=_mpi_op(w, op))
        return Work(w, a, where, request, scale)
    if nccl.usable(a):
        done = _nccl(w).all_reduce(a, op)
        return Work(w, a, where, done, scale)
    host = np.ascontiguousarray(_to_host(a))  # a device array without NCCL: through the host

    def back() -> None:
        a.set(host)  # CuPy's host-to-device copy into the array itself
        if scale is not None:
            scale()
    request = w.comm.Iallreduce(w.mpi.IN_PLACE, host, op=_mpi_op(w, op))
    return Work(w, a, where, request, back)


def _to_host(a: Any) -> np.ndarray:
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def _nccl(w: World) -> nccl.Communicator:
    """The world's NCCL communicator, made on first use; rank 0's unique id reaches the others
    over MPI as a plain buffer."""
    if w.nccl is None:
        w.nccl = nccl.Communicator(w.rank, w.size, lambda uid: w.wait(w.comm.Ibcast(uid, root=0),
                                                                        "gpunn.distributed: NCCL unique id"))
    return w.nccl


def all_reduce(a: Any, op: str = "sum") -> Any:
    """Reduce `a` in place across ranks with `op`; returns `a`."""
    return all_reduce_async(a, op).wait()


def broadcast(a: Any, src: int = 0) -> Any:
    """Overwrite `a` on every rank with rank `src`'s values (same shape and dtype everywhere); returns `a`."""
    where = "gpunn.distributed.broadcast"
    _check(a, where)
    w = world()
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= int(src) < w.size:
        raise ValueError(f"{where}: argument 'src' must be a rank in 0..{w.size - 1}, got {src!r}")
    if w.size == 1:
        return a
    if isinstance(a, np.ndarray):
        w.wait(w.comm.Ibcast(a, root=int(src)), where)
        return a
    if nccl.usable(a):
        w.wait(_nccl(w).broadcast(a, int(src)), where)
        return a
    host = np.ascontiguousarray(_to_host(a))
    w.wait(w.comm.Ibcast(host, root=int(src)), where)
    a.set(host)
    return a


def barrier() -> None:
    """Wait until every rank has reached this call (at most the group's timeout)."""
    w = world()
    if w.size > 1:
        w.wait(w.comm.Ibarrier(), "gpunn.distributed.barrier")


def all_gather_host(values: Sequence[float] | np.ndarray, dtype: Any = np.int64) -> np.ndarray:
    """Every rank's `values` (a short host vector of the same length on every rank), as a
    (world_size, len) array: rank r's row is r's values. For agreements and checks, not data."""
    mine = np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))
    w = world()
    if w.size == 1:
        return mine.reshape(1, -1)
    out = np.empty((w.size, mine.size), dtype=mine.dtype)
    w.wait(w.comm.Iallgather(mine, out), "gpunn.distributed.all_gather")
    return out


def agree_max(value: float) -> float:
    """The largest of every rank's `value` (a flag any rank may raise)."""
    return float(all_reduce(np.array([value], dtype=np.float64), "max")[0])


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank `src`'s integer (a seed) on every rank."""
    return int(broadcast(np.array([value], dtype=np.int64), src)[0])
