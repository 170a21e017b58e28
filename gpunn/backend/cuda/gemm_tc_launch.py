"""Launcher for the tensor-core GEMM kernels of kernels/gemm_tc.cu: float32 C = op(A) @ op(B), or C += ....

`gemm_tc` checks every argument (precision, array type, the operand dtype that precision takes,
2-D, inner dimensions, int32 range, the output's shape, dtype float32, layout, writability and
separation from the operands), maps each operand's layout to a kernel form without copying, and
launches with every scalar an exact np.int32. The CUDA backends' matmul / matmul_acc (kernel_ops.py) call
it for 2-D float16 / bfloat16 pairs, and for float32 pairs under matmul_precision "tf32".

Precisions -> operand dtype -> entry-point suffix:
  "fp16": np.float16          -> f16  (m16n16k16 half fragments)
  "bf16": ml_dtypes.bfloat16  -> bf16 (m16n16k16 bf16 fragments)
  "tf32": np.float32          -> tf32 (m16n16k8 tf32 fragments; the kernel rounds each operand
                                       element to TF32, to nearest, ties away from zero)
The output is always float32 (fp32 accumulation).

Layouts -> forms, as gemm_launch: a C-contiguous operand is passed as it is; an F-contiguous one
(the transpose view of a C-contiguous array, e.g. `x.T` for Dense's weight gradient) as its
C-contiguous base, read transposed by the kernel through WMMA's col_major fragment layout:
  a C, b C -> nn;   a C, b F -> nt;   a F, b C -> tn;
  a F, b F -> b is copied C-contiguous, then tn (no tt form);
  any other strides -> that operand is copied with ascontiguousarray.
Tile: one, 64 x 64 of C per block of 128 threads (4 warps of 2 x 2 WMMA fragments), K stepped by 16.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunn.backend.cuda.launchers import INT32_MAX, _i32, _memo_plan
from gpunn.backend.cuda.gemm_launch import _check_out, _operand
from gpunn.backend.cuda.source import KernelCache

FAMILY = "gemm_tc"
GEMM_TC_THREADS = 128  # gemm_tc.cu's GEMM_TC_THREADS
TILE = (64, 64)  # (BM, BN) of gemm_tc.cu
MAX_GRID_Y = 65535  # gridDim.y limit (keep gridDim.x under it too)
INT32_HEADROOM = 128  # more than a tile side (64) plus a K step (16)


def _bfloat16() -> np.dtype:
    import ml_dtypes  # a dependency of the half-precision path only
    return np.dtype(ml_dtypes.bfloat16)


def operand_dtype(precision: str) -> np.dtype:
    """The operand dtype `precision` takes."""
    if precision == "fp16":
        return np.dtype(np.float16)
    if precision == "bf16":
        return _bfloat16()
    if precision == "tf32":
        return np.dtype(np.float32)
    raise ValueError(f"gemm_tc: argument 'precision' must be one of {PRECISIONS}, got {precision!r}")


PRECISIONS = ("bf16", "fp16", "tf32")
_SUFFIX = {"fp16": "f16", "bf16": "bf16", "tf32": "tf32"}


def _check_operands(xp: Any, a: Any, b: Any, dtype: np.dtype, precision: str, where: str) -> None:
    for name, arr in (("a", a), ("b", b)):
        if not isinstance(arr, xp.ndarray):
            raise TypeError(f"{where}: argument '{name}' must be a {xp.__name__}.ndarray, got {type(arr).__name__}")
        if arr.dtype != dtype:
            raise TypeError(f"{where}: argument '{name}' must have dtype {dtype} for precision={precision!r}, "
                            f"got {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{where}: argument '{name}' must have 2 dimensions, got shape {tuple(arr.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{where}: argument 'b' must have {a.shape[1]} rows (the columns of 'a' {tuple(a.shape)}), "
                         f"got shape {tuple(b.shape)}")


def gemm_tc(kernels: KernelCache, xp: Any, a: Any, b: Any, *, out: Any | None = None, accumulate: bool = False,
            precision: str = "bf16") -> Any:
    """float32 C = a @ b on the tensor cores, for 2-D operands of the dtype `precision` takes
    (float16 for "fp16", ml_dtypes.bfloat16 for "bf16", float32 for "tf32", rounded to TF32 by the
    kernel), written to `out` (float32) when given; with accumulate=True, out += a @ b in place
    (out required). Returns the result array."""
    where = "gemm_tc"
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{where}: argument 'precision' must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(accumulate, (bool, np.bool_)):
        raise TypeError(f"{where}: argument 'accumulate' must be a bool, got {type(accumulate).__name__}")
    _check_operands(xp, a, b, operand_dtype(precision), precision, where)
    m, k = (int(s) for s in a.shape)
    n = int(b.shape[1])
    if accumulate and out is None:
        raise ValueError(f"{where}: argument 'out' is required when accumulate=True (the array to add a @ b to)")
    if out is not None:
        _check_out(xp, out, a, b, m, n, where, dtype=np.float32)
    grid, ints = _plan(where, m, n, k, MAX_GRID_Y)
    c = out if out is not None else xp.empty((m, n), dtype=np.float32)
    if m == 0 or n == 0:
        return c
    a_buf, a_t = _operand(xp, a)
    b_buf, b_t = _operand(xp, b)
    if a_t and b_t:  # no tt kernel: make b row-major
        b_buf, b_t = xp.ascontiguousarray(b), False
    form = ("t" if a_t else "n") + ("t" if b_t else "n")
    fn = kernels.function(FAMILY, f"gemm_tc_{form}_{_SUFFIX[precision]}")
    fn(grid, (GEMM_TC_THREADS,), (a_buf, b_buf, c, *ints, np.int32(1 if accumulate else 0)))
    return c


@_memo_plan
def _plan(where: str, m: int, n: int, k: int, *constants: int) -> tuple[tuple[int, int], tuple[np.int32, ...]]:
    """(grid, the kernel's int scalars) for an m x n x k product, computed once per shape.
    `constants` (MAX_GRID_Y) are only part of the cache key."""
    ints = tuple(_i32(v, name, where) for name, v in (("M", m), ("N", n), ("K", k)))
    if max(m, n, k) > INT32_MAX - INT32_HEADROOM:  # the kernels form indices past the tails
        raise ValueError(f"{where}: dimensions {(m, n, k)} leave no room for the kernel's int indices past a tile "
                         f"(each must be at most {INT32_MAX - INT32_HEADROOM})")
    bm, bn = TILE
    grid = (math.ceil(n / bn), math.ceil(m / bm))
    if grid[1] > MAX_GRID_Y or grid[0] > MAX_GRID_Y:
        raise ValueError(f"{where}: output of shape {(m, n)} needs a grid of {grid} blocks, over the {MAX_GRID_Y} "
                         "limit per dimension")
    return grid, ints
