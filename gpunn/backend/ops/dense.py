"""Matrix products for the dense layers, so a backend can schedule them (the CPU backend splits
them over its own threads, see gpunn/backend/cpu/threads.py).

Precision (mixed-precision training):
- Half operands (float16 or ml_dtypes.bfloat16, both the same dtype): the product is computed in
  float32 (both upcast, exact) and the result rounded once to the half dtype, round to nearest even:
  the semantics of tensor cores with fp32 accumulation. A half operand met with a float32 (or
  float64) one is upcast to float32 first, then NumPy's promotion applies (a float32 result).
- `matmul_precision` "highest" (the default): float32 products in float32. "tf32": float32 x float32
  products round both operands to TF32 first (CastOps.round_tf32, as kernels/gemm_tc.cu does), with
  float32 accumulation: torch.set_float32_matmul_precision("high"). float64 is never rounded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from gpunn.backend.ops.cast import is_half

MATMUL_PRECISIONS = ("highest", "tf32")
_F32 = np.dtype(np.float32)


def check_matmul_precision(value: Any, where: str = "matmul_precision") -> str:
    """`value` when it is one of MATMUL_PRECISIONS, else a ValueError naming 'matmul_precision'."""
    if not isinstance(value, str) or value not in MATMUL_PRECISIONS:
        raise ValueError(f"{where}: argument 'matmul_precision' must be one of {MATMUL_PRECISIONS}, got {value!r}")
    return value


def round_to(y: Any, dtype: Any) -> Any:
    """`y` rounded to `dtype` (round to nearest even); an overflow to +-inf is silent, as on a GPU: in
    fp16 training it is what the loss scaler's non-finite check is there to catch."""
    with np.errstate(over="ignore", invalid="ignore"):
        return y.astype(dtype)


class DenseOps:
    xp: Any
    _matmul_precision: str = "highest"

    @property
    def matmul_precision(self) -> str:
        """"highest" (float32 products in float32) or "tf32" (float32 operands rounded to TF32, float32
        accumulation). A plain per-backend attribute, not thread-local: a backend shared by threads
        shares it too (set it once, or give each thread its own backend)."""
        return self._matmul_precision

    @matmul_precision.setter
    def matmul_precision(self, value: str) -> None:
        self._matmul_precision = check_matmul_precision(value, type(self).__name__)

    @contextlib.contextmanager
    def matmul_precision_scope(self, value: str) -> Iterator[None]:
        """Set matmul_precision to `value` ("highest" or "tf32", checked before anything changes) for
        the body, and restore the previous value afterwards (also on an exception). Not thread-safe:
        see matmul_precision."""
        check_matmul_precision(value, "matmul_precision_scope")
        previous = self._matmul_precision
        self._matmul_precision = value
        try:
            yield
        finally:
            self._matmul_precision = previous

    def _matmul_f32(self, a: Any, b: Any) -> Any:
        """The product before any rounding to a half dtype: half operands upcast to float32 (a float32
        result); float32 x float32 under "tf32" with both operands rounded to TF32; else xp.matmul."""
        xp = self.xp
        if is_half(a) or is_half(b):
            a32 = a.astype(np.float32) if is_half(a) else a
            b32 = b.astype(np.float32) if is_half(b) else b
            return xp.matmul(a32, b32)
        if self._matmul_precision == "tf32" and a.dtype == _F32 and b.dtype == _F32:
            return xp.matmul(self.round_tf32(a), self.round_tf32(b))  # type: ignore[attr-defined]
        return xp.matmul(a, b)

    def matmul(self, a: Any, b: Any) -> Any:
        """a @ b, with NumPy's broadcasting and type rules, except: two operands of one half dtype
        give that dtype, computed in float32 and rounded once; a half operand with a float32 one is
        upcast first; float32 operands under matmul_precision "tf32" are rounded to TF32."""
        check_matmul(a, b)
        y = self._matmul_f32(a, b)
        if is_half(a) and a.dtype == b.dtype:
            return round_to(y, a.dtype)
        return y

    def matmul_acc(self, out: Any, a: Any, b: Any) -> None:
        """out += a @ b in place (a gradient accumulating), the product computed as matmul computes it
        but not rounded to a half dtype: with a half `out`, out = half(float32(out) + product),
        rounded once; with a float32 `out`, the float32 product is added. Here through a temporary;
        the CUDA backends' kernel adds the product in its epilogue instead."""
        check_matmul(a, b)
        prod = self._matmul_f32(a, b)
        if is_half(out):
            with np.errstate(over="ignore", invalid="ignore"):
                out[...] = round_to(out.astype(np.float32) + prod, out.dtype)
        else:
            out += prod


def check_matmul(a: Any, b: Any) -> None:
    """Both at least 2-D, with a's columns matching b's rows."""
    for name, arr in (("a", a), ("b", b)):
        if getattr(arr, "ndim", 0) < 2:
            raise ValueError(f"matmul: argument '{name}' must have at least 2 dimensions, got shape "
                             f"{getattr(arr, 'shape', None)}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: argument 'b' must have {a.shape[-1]} rows (the columns of 'a' {tuple(a.shape)}), "
                         f"got shape {tuple(b.shape)}")
