"""Precision casts for mixed-precision training, the NumPy references of kernels/cast.cu (against xp).

Contract (the CUDA kernels match it bit for bit, except that a NaN's sign and payload are not kept:
CUDA's float -> 16-bit conversion gives the canonical NaN 0x7fff, and 16-bit -> float 0x7fffffff):
- cast_to_half(x, dtype) -> x.astype(dtype): float32 `x` (any shape) to float16 (NumPy) or
  bfloat16 (ml_dtypes.bfloat16), round to nearest, ties to even; overflow gives +-inf, tiny values
  subnormals or a signed zero. The fp32 master weights -> their half copy.
- cast_to_float(x) -> x.astype(float32): float16 / bfloat16 to float32, exact.
- unscale_check(g, inv_scale, found_inf) -> out: out = float32(g) * inv_scale[0], one float32
  multiply; inv_scale is a 1-element float32 array (device memory, so a captured CUDA graph reads
  the current loss scale), found_inf a 1-element int32 array set to 1 when any product is inf or
  NaN and otherwise left as it was: it is never cleared here (the caller zeroes it once per step,
  and the check of several buffers may share it). Nothing is read back to the host.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def half_dtype(dtype: Any, where: str, name: str = "dtype") -> np.dtype:
    """np.dtype(dtype) when it is float16 or bfloat16, else a TypeError naming `name`."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in HALF_DTYPES:
        raise TypeError(f"{where}: argument '{name}' must be float16 or bfloat16 (ml_dtypes.bfloat16), "
                        f"got {dtype!r}")
    return dt


def cast_to_half(x: Any, dtype: Any, xp: Any = np) -> Any:
    if np.dtype(x.dtype) != np.dtype(np.float32):
        raise TypeError(f"cast_to_half: argument 'x' must have dtype float32, got {x.dtype}")
    dt = half_dtype(dtype, "cast_to_half")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf and NaN are part of the contract
        return x.astype(dt)


def cast_to_float(x: Any, xp: Any = np) -> Any:
    half_dtype(x.dtype, "cast_to_float", "x")
    with np.errstate(invalid="ignore"):
        return x.astype(np.float32)


def unscale_check(g: Any, inv_scale: Any, found_inf: Any, xp: Any = np) -> Any:
    half_dtype(g.dtype, "unscale_check", "g")
    with np.errstate(over="ignore", invalid="ignore"):  # an inf or NaN product is what it detects
        out = xp.multiply(g.astype(np.float32), inv_scale.reshape(-1)[:1].astype(np.float32, copy=False))
    bad = xp.any(~xp.isfinite(out)).astype(found_inf.dtype)
    found_inf[...] = xp.maximum(found_inf, bad)
    return out
