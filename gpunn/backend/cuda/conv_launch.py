"""Launchers for the implicit-GEMM convolution kernels of kernels/conv.cu.

`conv2d_forward` and `conv2d_backward` check every argument (type, dtype float32/float64 and
equal across the arrays, shapes, C-contiguity, geometry, int32 ranges), allocate the outputs and
the split-K workspace, pick a tile and a split-K factor (the heuristics below), and launch with
every scalar as an exact np.int32. The shared check helpers come from launchers.py.

Tile choice (`pick_tile`), per GEMM of M rows x Ncol columns with a reduction of length R, among
  "L" (64 x 64 x 16, 4x4 per thread), "S" (32 x 128 x 8, 4x4), "T" (16 x 256 x 8, 2x8):
  the tile with the least padded work ceil(M/BM)*BM * ceil(Ncol/BN)*BN * ceil(R/BK)*BK, ties going
  to L, S, T in that order, or S, T, L when R <= 32. So a layer of 6 or 16 filters (LeNet) gets
  T's 16 rows rather than L's 64 (4x less wasted work), 32 filters get S, the data gradient of a
  1- or 3-channel input gets T; a first layer with C = 1 or 3 (R = 9, 25, 27) prefers the BK = 8
  tiles, whose 2-4 reduction steps still overlap gathers with math where BK = 16 gives 1-2; the
  weight gradient (M = F, Ncol = C*KH*KW, often 27..576) is steered away from BN = 256 when its
  columns are few. 1x1 convolutions need no tile of their own: their gather (i = j = 0) reads
  along input rows, coalesced, and they follow the same rule.
Split-K (`pick_splits`, weight gradient only): its output is F x C*KH*KW, often a handful of
tiles, while the reduction N*OH*OW is long. The reduction is cut into as many chunks as it takes
to give about SPLITK_TARGET_BLOCKS blocks, each chunk at least SPLITK_MIN_CHUNK long and at most
SPLITK_MAX splits; partial sums go to a workspace that a second kernel reduces in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpunn.backend.cuda.launchers import (BLOCK, INT32_MAX, _check_array, _geometry, _i32, _memo_plan, _suffix,
                                          grid_for)
from gpunn.backend.cuda.source import KernelCache

Pair = tuple[int, int]

CONV_THREADS = 256  # conv.cu's CONV_THREADS: every tile takes exactly this many threads
# name -> (BM, BN, BK): conv.cu's TileL / TileS / TileT
TILES: dict[str, tuple[int, int, int]] = {"L": (64, 64, 16), "S": (32, 128, 8), "T": (16, 256, 8)}
SPLITK_TARGET_BLOCKS = 264  # two blocks per SM on a 132-SM H100/H200
SPLITK_MIN_CHUNK = 512  # reduction elements per split: shorter chunks are dominated by the prologue
SPLITK_MAX = 64
MAX_GRID_YZ = 65535  # gridDim.y and gridDim.z limits
INT32_HEADROOM = 1024  # more than any tile's overhang (BK, BN <= 256)


def pick_tile(rows: int, cols: int, reduction: int) -> str:
    """The tile configuration for a (rows x cols) GEMM output with a `reduction`-long sum: the least
    padded work, ties by preference (see the module docstring)."""
    order = ("S", "T", "L") if reduction <= 32 else ("L", "S", "T")

    def padded(name: str) -> int:
        bm, bn, bk = TILES[name]
        return -(-rows // bm) * bm * (-(-cols // bn) * bn) * (-(-reduction // bk) * bk)
    return min(order, key=padded)  # min keeps the first of equal costs: the preference order


def pick_splits(tiles: int, reduction: int, bk: int) -> int:
    """Split-K factor for the weight gradient: enough chunks to fill the GPU, none shorter than
    SPLITK_MIN_CHUNK, at most SPLITK_MAX; 1 when the output tiles alone fill it."""
    if tiles >= SPLITK_TARGET_BLOCKS:
        return 1
    want = math.ceil(SPLITK_TARGET_BLOCKS / tiles)
    return max(1, min(want, reduction // SPLITK_MIN_CHUNK, SPLITK_MAX, math.ceil(reduction / bk)))


@dataclass(frozen=True)
class ConvPlan:
    """Everything a launch needs that depends only on shapes and geometry (memoized)."""
    oh: int
    ow: int
    geom: tuple[np.int32, ...]  # N C H W F KH KW SH SW PH PW DH DW OH OW


def _grid(where: str, columns: int, rows: int, tile: str, splits: int = 1) -> tuple[int, int, int]:
    bm, bn, _ = TILES[tile]
    gy = -(-rows // bm)
    if gy > MAX_GRID_YZ:
        raise ValueError(f"{where}: {rows} GEMM rows need {gy} row tiles, over the grid's y limit {MAX_GRID_YZ}")
    gx = -(-columns // bn)
    _i32(gx, "column tiles", where)
    return gx, gy, splits


@_memo_plan
def _conv_plan(where: str, n: int, c: int, h: int, w: int, f: int, kh: int, kw: int, stride: Any, padding: Any,
               dilation: Any) -> ConvPlan:
    (sh, sw), (ph, pw), (dh, dw), oh, ow = _geometry(where, h, w, kh, kw, stride, padding, dilation)
    # Every product the kernels index in int32 (conv.cu's header) must fit, with room for a tile's
    # overhang past the end (k0 + BK + offset is formed before it is compared with the length).
    limit = INT32_MAX - INT32_HEADROOM
    k = c * kh * kw
    for label, value in (("N*OH*OW", n * oh * ow), ("N*H*W", n * h * w), ("C*H*W", c * h * w),
                         ("F*OH*OW", f * oh * ow), ("F*C*KH*KW", f * k), ("F*C*KH*KW + F", f * k + f)):
        if value > limit:
            raise ValueError(f"{where}: {label} = {value} is too large for the kernels' int32 indexing "
                             f"(at most {limit}); split the batch or the layer")
    geom = tuple(_i32(v, k, where) for k, v in (("N", n), ("C", c), ("H", h), ("W", w), ("F", f), ("KH", kh),
                                                ("KW", kw), ("SH", sh), ("SW", sw), ("PH", ph), ("PW", pw),
                                                ("DH", dh), ("DW", dw), ("OH", oh), ("OW", ow)))
    return ConvPlan(oh, ow, geom)


def _check_weight(xp: Any, weight: Any, c: int, dtype: Any, where: str) -> tuple[int, int, int]:
    _check_array(xp, weight, "weight", where, dtype=dtype, ndim=4)
    f, wc, kh, kw = weight.shape
    if wc != c or min(f, kh, kw) < 1:
        raise ValueError(f"{where}: argument 'weight' must have shape (F, {c}, KH, KW) with F, KH, KW >= 1 "
                         f"(C = {c} from 'x'), got {tuple(weight.shape)}")
    return int(f), int(kh), int(kw)


def _check_x(xp: Any, x: Any, where: str) -> tuple[str, int, int, int, int]:
    _check_array(xp, x, "x", where, ndim=4)
    sfx = _suffix(x, "x", where)
    n, c, h, w = (int(s) for s in x.shape)
    if min(n, c, h, w) < 1:
        raise ValueError(f"{where}: argument 'x' must be non-empty (N, C, H, W), got shape {tuple(x.shape)}")
    return sfx, n, c, h, w


def conv2d_forward(kernels: KernelCache, xp: Any, x: Any, weight: Any, bias: Any | None, stride: Any, padding: Any,
                   dilation: Any, relu: bool = False, tile: str | None = None) -> Any:
    """y = conv(x, weight) (+ bias) (then max(., 0) when relu), (N, F, OH, OW). `tile` forces a
    tile configuration ("L", "S" or "T"; tests), else pick_tile decides."""
    where = "conv2d_forward"
    sfx, n, c, h, w = _check_x(xp, x, where)
    f, kh, kw = _check_weight(xp, weight, c, x.dtype, where)
    if bias is not None:
        _check_array(xp, bias, "bias", where, dtype=x.dtype, shape=(f,))
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{where}: argument 'relu' must be a bool, got {relu!r}")
    plan = _conv_plan(where, n, c, h, w, f, kh, kw, stride, padding, dilation)
    tile = _tile_arg(tile, f, n * plan.oh * plan.ow, c * kh * kw, where)
    y = xp.empty((n, f, plan.oh, plan.ow), dtype=x.dtype)
    grid = _grid(where, n * plan.oh * plan.ow, f, tile)
    flags = (np.int32(bias is not None), np.int32(bool(relu)))
    kernels.function("conv", f"conv_fwd_{tile}_{sfx}")(
        grid, (CONV_THREADS,), (x, weight, weight if bias is None else bias, y, *plan.geom, *flags))
    return y


def _tile_arg(tile: str | None, rows: int, cols: int, reduction: int, where: str) -> str:
    if tile is None:
        return pick_tile(rows, cols, reduction)
    if tile not in TILES:
        raise ValueError(f"{where}: argument 'tile' must be one of {sorted(TILES)} or None, got {tile!r}")
    return tile


def conv2d_backward(kernels: KernelCache, xp: Any, dy: Any, x: Any, weight: Any, stride: Any, padding: Any,
                    dilation: Any, need_dx: bool = True, relu_y: Any | None = None, split_k: int | None = None,
                    tile: str | None = None) -> tuple[Any | None, Any, Any]:
    """(dx or None, dweight, dbias) of conv2d_forward(x, weight, ...) for the output gradient dy,
    masked by relu_y > 0 when relu_y is given. `split_k` forces the weight gradient's split count
    (1 = no split; tests), else pick_splits decides; `tile` forces the tile of both GEMMs."""
    where = "conv2d_backward"
    sfx, n, c, h, w = _check_x(xp, x, where)
    f, kh, kw = _check_weight(xp, weight, c, x.dtype, where)
    plan = _conv_plan(where, n, c, h, w, f, kh, kw, stride, padding, dilation)
    _check_array(xp, dy, "dy", where, dtype=x.dtype, shape=(n, f, plan.oh, plan.ow))
    if relu_y is not None:
        _check_array(xp, relu_y, "relu_y", where, dtype=x.dtype, shape=dy.shape)
    mask = np.int32(relu_y is not None)
    ry = dy if relu_y is None else relu_y  # never read when mask == 0
    k = c * kh * kw
    q = n * plan.oh * plan.ow
    dweight = xp.empty((f, c, kh, kw), dtype=x.dtype)
    dbias = xp.empty((f,), dtype=x.dtype)
    _weight_grad(kernels, xp, where, sfx, x, dy, ry, mask, dweight, dbias, plan, f, k, q, split_k, tile)
    if not need_dx:
        return None, dweight, dbias
    dx = xp.empty((n, c, h, w), dtype=x.dtype)
    dx_tile = _tile_arg(tile, c, n * h * w, f * kh * kw, where)
    grid = _grid(where, n * h * w, c, dx_tile)
    kernels.function("conv", f"conv_dx_{dx_tile}_{sfx}")(grid, (CONV_THREADS,), (dy, ry, weight, dx, *plan.geom, mask))
    return dx, dweight, dbias


def _weight_grad(kernels: KernelCache, xp: Any, where: str, sfx: str, x: Any, dy: Any, ry: Any, mask: np.int32,
                 dweight: Any, dbias: Any, plan: ConvPlan, f: int, k: int, q: int, split_k: int | None,
                 tile: str | None) -> None:
    """dW and db into dweight / dbias: one launch, or a split-K launch into a workspace plus its
    fixed-order reduction."""
    tile = _tile_arg(tile, f, k, q, where)
    bm, bn, bk = TILES[tile]
    tiles = -(-f // bm) * -(-k // bn)
    if split_k is None:
        splits = pick_splits(tiles, q, bk)
    else:
        if not (isinstance(split_k, (int, np.integer)) and not isinstance(split_k, bool) and split_k >= 1):
            raise ValueError(f"{where}: argument 'split_k' must be an int >= 1 or None, got {split_k!r}")
        splits = int(min(split_k, MAX_GRID_YZ))
    chunk = -(-q // splits)
    chunk = -(-chunk // bk) * bk  # a multiple of BK, so only the last chunk has a tail
    splits = -(-q // chunk)  # no empty chunk
    grid = _grid(where, k, f, tile, splits)
    fn = kernels.function("conv", f"conv_dw_{tile}_{sfx}")
    if splits == 1:
        fn(grid, (CONV_THREADS,), (x, dy, ry, dweight, dbias, *plan.geom, mask, _i32(chunk, "chunk", where)))
        return
    _i32(splits * (f * k + f), "split-K workspace elements", where)
    ws = xp.empty((splits * (f * k + f),), dtype=x.dtype)
    wsb = ws[splits * f * k:]
    fn(grid, (CONV_THREADS,), (x, dy, ry, ws, wsb, *plan.geom, mask, _i32(chunk, "chunk", where)))
    kernels.function("conv", f"conv_splitk_reduce_{sfx}")(
        (grid_for(f * k + f),), (BLOCK,), (ws, wsb, dweight, dbias, np.int32(f * k), np.int32(f), np.int32(splits)))


__all__ = ["TILES", "conv2d_backward", "conv2d_forward", "pick_splits", "pick_tile"]
