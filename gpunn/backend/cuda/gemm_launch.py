"""Launcher for the tiled GEMM kernels of kernels/gemm.cu: C = op(A) @ op(B), optionally C += ....

`gemm` checks every argument (array type, dtype float32/float64 and equal, 2-D, inner dimensions,
layout, int32 range, the output's shape, dtype, layout and writability), maps each operand's
layout to a kernel form without copying, picks a tile and a load path, and launches with every
scalar an exact np.int32. The shared check helpers come from launchers.py.

Layouts -> forms. The kernels read row-major buffers. A C-contiguous operand is passed as it is;
the transpose view of a C-contiguous array (an F-contiguous 2-D array, e.g. `x.T` in Dense's
weight gradient or `w.T` in its data gradient) is passed as its C-contiguous base, and the kernel
reads it transposed:
  a C, b C -> nn;   a C, b F -> nt;   a F, b C -> tn;
  a F, b F -> b is copied C-contiguous, then tn (the kernels have no tt form);
  any other strides -> that operand is copied with ascontiguousarray.
Tile choice (`pick_tile`): the 128 x 128 tile (8 x 8 outputs per thread, the most reuse per
shared read) when its grid has at least SM_COUNT blocks, i.e. fills the 132 SMs of an H100/H200
at least once; otherwise the 64 x 64 tile (4 x 4 per thread), whose grid is 4x larger, so a small
product (a Dense layer at batch 128: 128 x 120, 128 x 10, ...) spreads over more SMs.
Load path: `vec` (16-byte float4 / double2 global loads) when both operand buffers are 16-byte
aligned and every operand's contiguous dimension (K for a row-major A or a transposed B, M for a
transposed A, N for a row-major B) is a multiple of the vector width; `scl` otherwise.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gpunn.backend.cuda.launchers import INT32_MAX, _check_array, _i32, _memo_plan, _suffix
from gpunn.backend.cuda.source import KernelCache

GEMM_THREADS = 256  # gemm.cu's GEMM_THREADS
TILES: dict[str, tuple[int, int]] = {"128": (128, 128), "64": (64, 64)}  # name -> (BM, BN) of gemm.cu
SM_COUNT = 132  # H100 / H200 SMs: a grid smaller than this leaves SMs idle
MAX_GRID_Y = 65535  # gridDim.y limit (gridDim.x is far larger, but keep both under it)
VEC_BYTES = 16  # float4 / double2
INT32_HEADROOM = 256  # more than a tile side (128) plus a K step (8)
LOADS = ("vec", "scl")


def pick_tile(m: int, n: int) -> str:
    """The tile for an m x n output: "128" when its 128-tile grid fills every SM once, else "64"."""
    bm, bn = TILES["128"]
    return "128" if math.ceil(m / bm) * math.ceil(n / bn) >= SM_COUNT else "64"


def _address(a: Any) -> int:
    """The device (CuPy) or host (NumPy) address of a's first element."""
    ptr = getattr(getattr(a, "data", None), "ptr", None)  # cupy.ndarray.data is a MemoryPointer
    return int(ptr) if ptr is not None else int(a.__array_interface__["data"][0])


def _operand(xp: Any, a: Any) -> tuple[Any, bool]:
    """(row-major buffer, transposed): a C-contiguous `a` is its own buffer; an F-contiguous one is
    read through its C-contiguous transpose; anything else is copied."""
    if a.flags.c_contiguous:
        return a, False
    if a.flags.f_contiguous:
        return a.T, True
    return xp.ascontiguousarray(a), False


def _check_operands(xp: Any, a: Any, b: Any, where: str) -> None:
    for name, arr in (("a", a), ("b", b)):
        if not isinstance(arr, xp.ndarray):
            raise TypeError(f"{where}: argument '{name}' must be a {xp.__name__}.ndarray, got {type(arr).__name__}")
        _suffix(arr, name, where)
        if arr.ndim != 2:
            raise ValueError(f"{where}: argument '{name}' must have 2 dimensions, got shape {tuple(arr.shape)}")
    if b.dtype != a.dtype:
        raise TypeError(f"{where}: argument 'b' must have the dtype of 'a' ({a.dtype}), got {b.dtype}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{where}: argument 'b' must have {a.shape[1]} rows (the columns of 'a' {tuple(a.shape)}), "
                         f"got shape {tuple(b.shape)}")


def _check_out(xp: Any, out: Any, a: Any, b: Any, m: int, n: int, where: str, dtype: Any = None) -> None:
    """`out` for C (m x n): `dtype` (default a's), contiguous, writable, not overlapping a or b."""
    _check_array(xp, out, "out", where, dtype=a.dtype if dtype is None else dtype, shape=(m, n), writable=True)
    may_share = getattr(xp, "may_share_memory", None)
    if may_share is not None and (may_share(out, a) or may_share(out, b)):
        raise ValueError(f"{where}: argument 'out' must not overlap 'a' or 'b' (the kernel writes C while it "
                         "still reads the operands)")


def _vector_ok(a_buf: Any, b_buf: Any, a_t: bool, b_t: bool, m: int, n: int, k: int) -> bool:
    """The `vec` kernels' preconditions (see gemm.cu): 16-byte aligned buffers, contiguous
    dimensions a multiple of the vector width."""
    width = VEC_BYTES // a_buf.dtype.itemsize
    a_contig = m if a_t else k  # A is read along K (row-major) or along M (transposed)
    b_contig = k if b_t else n  # B along N (row-major) or along K (transposed)
    return (a_contig % width == 0 and b_contig % width == 0
            and _address(a_buf) % VEC_BYTES == 0 and _address(b_buf) % VEC_BYTES == 0)


def gemm(kernels: KernelCache, xp: Any, a: Any, b: Any, *, out: Any | None = None, accumulate: bool = False,
         tile: str | None = None, load: str | None = None) -> Any:
    """C = a @ b for 2-D float32/float64 arrays of one dtype (np.matmul's result), written to `out`
    when given; with accumulate=True, out += a @ b in place (out required). `tile` ("128" / "64")
    and `load` ("vec" / "scl") force a configuration (tests); by default pick_tile and the
    alignment rule choose. Returns the result array."""
    where = "gemm"
    _check_operands(xp, a, b, where)
    m, k = (int(s) for s in a.shape)
    n = int(b.shape[1])
    if accumulate and out is None:
        raise ValueError(f"{where}: argument 'out' is required when accumulate=True (the array to add a @ b to)")
    if out is not None:
        _check_out(xp, out, a, b, m, n, where)
    tile, grid, ints = _plan(where, m, n, k, tile, SM_COUNT, MAX_GRID_Y)
    c = out if out is not None else xp.empty((m, n), dtype=a.dtype)
    if m == 0 or n == 0:
        return c
    a_buf, a_t = _operand(xp, a)
    b_buf, b_t = _operand(xp, b)
    if a_t and b_t:  # no tt kernel: make b row-major (the smaller copy is not worth a rule here)
        b_buf, b_t = xp.ascontiguousarray(b), False
    form = ("t" if a_t else "n") + ("t" if b_t else "n")
    if load is None:
        load = "vec" if _vector_ok(a_buf, b_buf, a_t, b_t, m, n, k) else "scl"
    elif load not in LOADS:
        raise ValueError(f"{where}: argument 'load' must be one of {LOADS} or None, got {load!r}")
    elif load == "vec" and not _vector_ok(a_buf, b_buf, a_t, b_t, m, n, k):
        raise ValueError(f"{where}: argument 'load'='vec' needs 16-byte aligned operands whose contiguous "
                         f"dimension is a multiple of {VEC_BYTES // a.dtype.itemsize}; got shapes {tuple(a.shape)}, "
                         f"{tuple(b.shape)} in form {form}")
    fn = kernels.function("gemm", f"gemm_{form}_{tile}_{load}_{_suffix(a, 'a', where)}")
    fn(grid, (GEMM_THREADS,), (a_buf, b_buf, c, *ints, np.int32(1 if accumulate else 0)))
    return c


@_memo_plan
def _plan(where: str, m: int, n: int, k: int, tile: str | None, *constants: int
          ) -> tuple[str, tuple[int, int], tuple[np.int32, ...]]:
    """(tile, grid, the kernel's int scalars) for an m x n x k product: a function of the shape
    alone, so computed once per shape (see launchers._memo_plan: the checks cost about as much as
    a small kernel). `constants` (this module's SM_COUNT, MAX_GRID_Y) are only part of the cache
    key, so that a changed constant is never served a stale plan."""
    ints = tuple(_i32(v, name, where) for name, v in (("M", m), ("N", n), ("K", k)))
    if max(m, n, k) > INT32_MAX - INT32_HEADROOM:  # the kernels form row, column and k indices past the tails
        raise ValueError(f"{where}: dimensions {(m, n, k)} leave no room for the kernel's int indices past a tile "
                         f"(each must be at most {INT32_MAX - INT32_HEADROOM})")
    tile = _tile_arg(tile, m, n, where)
    bm, bn = TILES[tile]
    grid = (math.ceil(n / bn), math.ceil(m / bm))
    if grid[1] > MAX_GRID_Y or grid[0] > MAX_GRID_Y:
        raise ValueError(f"{where}: output of shape {(m, n)} needs a grid of {grid} blocks, over the {MAX_GRID_Y} "
                         "limit per dimension")
    return tile, grid, ints


def _tile_arg(tile: str | None, m: int, n: int, where: str) -> str:
    if tile is None:
        return pick_tile(m, n)
    if tile not in TILES:
        raise ValueError(f"{where}: argument 'tile' must be one of {tuple(TILES)} or None, got {tile!r}")
    return tile
