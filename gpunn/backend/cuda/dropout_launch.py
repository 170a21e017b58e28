"""Launchers for kernels/philox.cu: dropout drawing from Philox4x32-10 with its state in device memory.

The generator state is a 2-element uint64 device array (seed, offset) that the backend holds
(`KernelOpsMixin.philox_state`). `dropout_forward` launches the draw, which reads the state on the
device, then `philox_advance`, one thread adding the blocks the draw used to the offset: both are
kernels on the current stream, so a captured CUDA graph replays the advance too and every replay
draws a fresh mask, the same masks eager mode would have drawn. The host never reads the state.
The stream is documented, with its NumPy reference `philox_uniform`, in gpunn/backend/ops/dropout.py.
The shared check helpers come from launchers.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.cuda import launchers
from gpunn.backend.cuda.launchers import BLOCK, _check_array, _suffix
from gpunn.backend.cuda.source import KernelCache
from gpunn.backend.ops.dropout import check_rate, dropout_scale, philox_blocks

FAMILY = "philox"
STATE_SHAPE = (2,)


def make_state(xp: Any, seed: int, offset: int = 0) -> Any:
    """A fresh (seed, offset) state on the device; the seed is taken mod 2^64."""
    return xp.asarray(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF, int(offset) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))


def check_state(xp: Any, state: Any, where: str) -> None:
    _check_array(xp, state, "state", where, dtype=np.uint64, shape=STATE_SHAPE, writable=True)


def philox_advance(kernels: KernelCache, xp: Any, state: Any, count: int) -> None:
    """state[1] += count on the device (one thread)."""
    check_state(xp, state, "philox_advance")
    if not 0 <= int(count) < 1 << 64:
        raise ValueError(f"philox_advance: argument 'count' must be in [0, 2^64), got {count!r}")
    _advance(kernels, state, int(count))


def _advance(kernels: KernelCache, state: Any, count: int) -> None:
    """The advance launch itself, on a checked state: one thread adds `count` to the offset."""
    kernels.function(FAMILY, "philox_advance")((1,), (1,), (state, np.uint64(count)))


def dropout_forward(kernels: KernelCache, xp: Any, x: Any, rate: float, state: Any) -> tuple[Any, Any]:
    """(y, uint8 mask) of x (any shape, C-contiguous, float32/float64), drawing from `state`."""
    where = "dropout_forward"
    _check_array(xp, x, "x", where)
    sfx = _suffix(x, "x", where)
    rate = check_rate(rate, where)
    check_state(xp, state, where)
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.uint8)
    n = int(x.size)
    if n == 0:
        return y, mask
    blocks = philox_blocks(n, x.dtype)
    t = x.dtype.type
    scalars = (np.int64(n), t(rate), dropout_scale(rate, x.dtype))
    kernels.function(FAMILY, f"dropout_fwd_{sfx}")((launchers.grid_for(blocks),), (BLOCK,),
                                                   (x, y, mask, state, *scalars))
    _advance(kernels, state, blocks)  # the next draw starts past the blocks this one used
    return y, mask


def dropout_backward(kernels: KernelCache, xp: Any, dy: Any, mask: Any, rate: float) -> Any:
    """dx = dy * (mask * scale), dy C-contiguous float32/float64, mask the forward's uint8 mask."""
    where = "dropout_backward"
    _check_array(xp, dy, "dy", where)
    sfx = _suffix(dy, "dy", where)
    _check_array(xp, mask, "mask", where, dtype=np.uint8, shape=dy.shape)
    rate = check_rate(rate, where)
    dx = xp.empty_like(dy)
    n = int(dy.size)
    if n:
        kernels.function(FAMILY, f"dropout_bwd_{sfx}")((launchers.grid_for(n),), (BLOCK,),
                                                       (dy, mask, dx, np.int64(n), dropout_scale(rate, dy.dtype)))
    return dx
