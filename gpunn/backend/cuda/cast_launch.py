"""Launchers for kernels/cast.cu: float32 <-> float16 / bfloat16 casts and the gradient unscale with
its inf/NaN check (and that check alone), over whole flat buffers (one launch each), for mixed-precision training.

Arrays: float16 is NumPy's np.float16, bfloat16 is ml_dtypes.bfloat16 (CuPy arrays of those dtypes
on the CUDA backend). Any shape, C-contiguous; the kernels index a flat buffer with 64-bit indices
(`n` is a `long long`, passed as np.int64). Each launcher may write into a given `out` (of the
right dtype and shape, writable), so a training step keeps reusing one half copy of the master
weights. The contract and the NumPy references are in gpunn/backend/ops/cast.py; the shared check
helpers come from launchers.py. The CUDA backends' CastOps overrides (kernel_ops.py) call them.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from gpunn.backend.cuda.launchers import BLOCK, _check_array, grid_for
from gpunn.backend.cuda.source import KernelCache

FAMILY = "cast"
_HALF = {np.dtype(np.float16): "f16", np.dtype(ml_dtypes.bfloat16): "bf16"}
HALF_DTYPES = tuple(_HALF)


def _half_suffix(dtype: Any, name: str, where: str) -> str:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    sfx = _HALF.get(dt)
    if sfx is None:
        raise TypeError(f"{where}: argument '{name}' must be float16 or bfloat16 (ml_dtypes.bfloat16), got "
                        f"{getattr(dtype, 'dtype', dtype)}")
    return sfx


def _out(xp: Any, out: Any, shape: tuple[int, ...], dtype: Any, where: str) -> Any:
    if out is None:
        return xp.empty(shape, dtype=dtype)
    _check_array(xp, out, "out", where, dtype=dtype, shape=shape, writable=True)
    return out


def _launch(kernels: KernelCache, name: str, n: int, *args: Any) -> None:
    if n:
        kernels.function(FAMILY, name)((grid_for(n),), (BLOCK,), (*args, np.int64(n)))


def cast_f32_to_half(kernels: KernelCache, xp: Any, x: Any, dtype: Any, out: Any = None) -> Any:
    """x (float32) rounded to nearest even into `dtype` (float16 or bfloat16): a new array or `out`."""
    where = "cast_f32_to_half"
    _check_array(xp, x, "x", where, dtype=np.float32)
    sfx = _half_suffix(dtype, "dtype", where)
    y = _out(xp, out, tuple(x.shape), np.dtype(dtype), where)
    _launch(kernels, f"cast_f32_to_{sfx}", int(x.size), x, y)
    return y


def cast_half_to_f32(kernels: KernelCache, xp: Any, x: Any, out: Any = None) -> Any:
    """x (float16 or bfloat16) as float32 (exact): a new array or `out`."""
    where = "cast_half_to_f32"
    _check_array(xp, x, "x", where)
    sfx = _half_suffix(x.dtype, "x", where)
    y = _out(xp, out, tuple(x.shape), np.float32, where)
    _launch(kernels, f"cast_{sfx}_to_f32", int(x.size), x, y)
    return y


def unscale_check(kernels: KernelCache, xp: Any, g: Any, inv_scale: Any, found_inf: Any, out: Any = None) -> Any:
    """out = float32(g) * inv_scale[0]; found_inf[0] = 1 when any product is inf or NaN (never cleared:
    the caller zeroes it). inv_scale: 1-element float32 device array; found_inf: 1-element int32."""
    where = "unscale_check"
    _check_array(xp, g, "g", where)
    sfx = _half_suffix(g.dtype, "g", where)
    _check_array(xp, inv_scale, "inv_scale", where, dtype=np.float32, shape=(1,))
    _check_array(xp, found_inf, "found_inf", where, dtype=np.int32, shape=(1,), writable=True)
    y = _out(xp, out, tuple(g.shape), np.float32, where)
    _launch(kernels, f"unscale_check_{sfx}_to_f32", int(g.size), g, y, inv_scale, found_inf)
    return y


def check_finite(kernels: KernelCache, xp: Any, g: Any, inv_scale: Any, found_inf: Any) -> None:
    """found_inf[0] = 1 when any float32(g) * inv_scale[0] is inf or NaN (never cleared), writing no
    products: check_finite_{f16,bf16}. g: float16 / bfloat16; inv_scale: 1-element float32 device
    array; found_inf: 1-element int32."""
    where = "check_finite"
    _check_array(xp, g, "g", where)
    sfx = _half_suffix(g.dtype, "g", where)
    _check_array(xp, inv_scale, "inv_scale", where, dtype=np.float32, shape=(1,))
    _check_array(xp, found_inf, "found_inf", where, dtype=np.int32, shape=(1,), writable=True)
    _launch(kernels, f"check_finite_{sfx}", int(g.size), g, inv_scale, found_inf)
