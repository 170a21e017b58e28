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

CastOps (mixed into Backend) is the backend-op form, against `self.xp`: cast_to_half(x, dtype, out=None),
cast_to_float(x, out=None), unscale_into(g, inv_scale, found_inf, out=None) (g may also be float32,
served by the generic op), nonfinite_check(g, inv_scale, found_inf) (the check alone, no output) and
round_tf32(x) (float32 rounded to TF32 as kernels/gemm_tc.cu rounds). The functions above stay the
plain NumPy references the kernel tests use.
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def is_half(a: Any) -> bool:
    """Whether `a` is an array of float16 or bfloat16 (a mixed-precision step's 16-bit values)."""
    dt = getattr(a, "dtype", None)
    return dt is not None and np.dtype(dt) in HALF_DTYPES


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


_F32 = np.dtype(np.float32)
_GRAD_DTYPES = HALF_DTYPES + (_F32,)


def _check_arr(a: Any, name: str, where: str, dtype: Any = None, shape: tuple[int, ...] | None = None) -> None:
    """An array (has dtype and shape), of `dtype` / `shape` when given; else an error naming `name`."""
    if not (hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"{where}: argument '{name}' must be an array, got {type(a).__name__}")
    if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
        raise TypeError(f"{where}: argument '{name}' must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{where}: argument '{name}' must have shape {tuple(shape)}, got {tuple(a.shape)}")


def check_scale_args(g: Any, inv_scale: Any, found_inf: Any, where: str) -> None:
    """g: float16 / bfloat16 / float32 array; inv_scale: 1-element float32; found_inf: 1-element int32."""
    _check_arr(g, "g", where)
    if np.dtype(g.dtype) not in _GRAD_DTYPES:
        raise TypeError(f"{where}: argument 'g' must be float16, bfloat16 (ml_dtypes.bfloat16) or float32, "
                        f"got {g.dtype}")
    _check_arr(inv_scale, "inv_scale", where, dtype=np.float32, shape=(1,))
    _check_arr(found_inf, "found_inf", where, dtype=np.int32, shape=(1,))


def check_out(out: Any, shape: tuple[int, ...], dtype: Any, where: str) -> None:
    """`out` must have `shape` and `dtype` and be writable."""
    _check_arr(out, "out", where, dtype=dtype, shape=shape)
    if not getattr(getattr(out, "flags", None), "writeable", True):
        raise ValueError(f"{where}: argument 'out' is written in place and must be writable")


class CastOps:
    """Precision casts and the loss-scale checks of mixed-precision training, against `self.xp`.

    The CUDA backends override cast_to_half / cast_to_float / unscale_into / nonfinite_check with
    kernels/cast.cu (C-contiguous arrays, op switched on in use_kernels); the contract is the
    module docstring's, bit for bit (except NaN payloads). None of these reads device memory
    back to the host, so each may run inside a captured step.
    """
    xp: Any

    def cast_to_half(self, x: Any, dtype: Any, out: Any = None) -> Any:
        """float32 `x` (any shape) rounded to nearest even into `dtype` (np.float16 or
        ml_dtypes.bfloat16); overflow gives +-inf. Written into `out` (dtype `dtype`, x's shape,
        writable) when given, else a new array. Returns the result."""
        where = "cast_to_half"
        _check_arr(x, "x", where, dtype=np.float32)
        dt = half_dtype(dtype, where)
        if out is not None:
            check_out(out, tuple(x.shape), dt, where)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(dt)
        if out is None:
            return y
        out[...] = y
        return out

    def cast_to_float(self, x: Any, out: Any = None) -> Any:
        """float16 / bfloat16 `x` as float32 (exact), into `out` (float32, x's shape) when given."""
        where = "cast_to_float"
        _check_arr(x, "x", where)
        half_dtype(x.dtype, where, "x")
        if out is not None:
            check_out(out, tuple(x.shape), np.float32, where)
        with np.errstate(invalid="ignore"):
            y = x.astype(np.float32)
        if out is None:
            return y
        out[...] = y
        return out

    def unscale_into(self, g: Any, inv_scale: Any, found_inf: Any, out: Any = None) -> Any:
        """out = float32(g) * inv_scale[0] (one float32 multiply, rounded once), and found_inf[0]
        set to 1 when any product is inf or NaN, otherwise left as it was (never cleared: the
        caller zeroes it once per step; several calls may share it). g: float16, bfloat16 or
        float32 (the kernels take the 16-bit ones); inv_scale: 1-element float32 array;
        found_inf: 1-element int32 array. `out` (float32, g's shape, writable; may be g itself when
        g is float32) or a new array. No host read. Returns out."""
        where = "unscale_into"
        check_scale_args(g, inv_scale, found_inf, where)
        if out is not None:
            check_out(out, tuple(g.shape), np.float32, where)
        xp = self.xp
        with np.errstate(over="ignore", invalid="ignore"):
            prod = xp.multiply(g.astype(np.float32, copy=False), inv_scale[:1])
            bad = xp.any(~xp.isfinite(prod)).astype(np.int32)
        found_inf[...] = xp.maximum(found_inf, bad)
        if out is None:
            return prod
        out[...] = prod
        return out

    def nonfinite_check(self, g: Any, inv_scale: Any, found_inf: Any) -> None:
        """found_inf[0] |= any(!isfinite(float32(g) * inv_scale[0])): unscale_into's check without
        writing the products (a gradient overflowing only once unscaled counts). Arguments as
        unscale_into's; found_inf is never cleared here. No host read."""
        where = "nonfinite_check"
        check_scale_args(g, inv_scale, found_inf, where)
        xp = self.xp
        with np.errstate(over="ignore", invalid="ignore"):
            prod = xp.multiply(g.astype(np.float32, copy=False), inv_scale[:1])
            bad = xp.any(~xp.isfinite(prod)).astype(np.int32)
        found_inf[...] = xp.maximum(found_inf, bad)

    def round_tf32(self, x: Any) -> Any:
        """float32 `x` rounded to TF32 (10 explicit mantissa bits) as a new float32 array, exactly as
        kernels/gemm_tc.cu rounds its tf32 operands (wmma::__float_to_tf32, cvt.rna.tf32.f32): to
        nearest, ties away from zero (add half an ulp of TF32 to the magnitude bits, clear the low 13);
        +-inf stays; a finite value past the largest TF32 becomes +-inf; NaN becomes 0x7fffffff."""
        where = "round_tf32"
        _check_arr(x, "x", where, dtype=np.float32)
        xp = self.xp
        u = xp.ascontiguousarray(x).view(np.uint32)
        mag = u & np.uint32(0x7FFFFFFF)
        r = (u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)  # wraps only for negative NaNs, replaced below
        r = xp.where(mag == np.uint32(0x7F800000), u, r)
        r = xp.where(mag > np.uint32(0x7F800000), np.uint32(0x7FFFFFFF), r)
        return xp.ascontiguousarray(r.astype(np.uint32, copy=False)).view(np.float32).reshape(x.shape)
