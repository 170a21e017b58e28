"""Launchers for the CUDA kernels in kernels/*.cu, shared by CupyBackend and EmulatedBackend.

Each launcher takes a `KernelCache` (whose loader is `cupy.RawModule` or `gpunn.emu.RawModule`)
and the array module `xp`, checks every argument before launch (type, dtype, shape, contiguity,
writability, geometry, int32 range), allocates the outputs, computes a grid that is right for any
size (grid-stride kernels, grid capped below every grid-dimension limit) and passes each scalar as
the exact numpy type the kernel declares: CuPy would pass a Python int as int64 and a float as
double, which silently corrupts an `int` / `float` parameter.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from gpunn._checks import int_arg, is_int, pair, real_arg
from gpunn.backend.cuda.source import KernelCache
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.backend.ops.optim import adam_constants, check_step_scalars

Pair = tuple[int, int]

BLOCK = 256  # threads per block for every kernel here; batchnorm.cu's BN_BLOCK must equal it
MAX_GRID = 65535  # below every architecture's gridDim.x limit; the kernels grid-stride over the rest
ADAM_CHUNK = 1 << 30  # adam's `n` is an int: bigger buffers are updated in several launches
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
SUPPORTED_DTYPES = tuple(_SUFFIX)  # every kernel family; the backend routes only these to kernels
# 16-bit variants, so far of im2col / col2im, max-pool and batch norm (kernels/im2col.cu, maxpool.cu,
# batchnorm.cu; the casts are in cast_launch.py). Their launchers take `_suffix(..., half=True)`.
_HALF_SUFFIX = {np.dtype(np.float16): "f16", np.dtype(ml_dtypes.bfloat16): "bf16"}
HALF_DTYPES = tuple(_HALF_SUFFIX)
PLANE_BLOCKS = 2048  # blocks per launch of the 2-D kernels: about two waves of resident blocks on 132 SMs
# batch norm: each channel is reduced by several blocks (parts) so that small C still fills the GPU
BN_TARGET_BLOCKS = 1024  # a few waves on 132 SMs
BN_MIN_PART = 2048  # elements: below this a part's fixed cost (two block reductions) dominates
INT32_MAX = int(np.iinfo(np.int32).max)


# -- argument checks --------------------------------------------------------------------------
def _check_array(xp: Any, a: Any, name: str, where: str, dtype: Any = None, shape: tuple[int, ...] | None = None,
                 ndim: int | tuple[int, ...] | None = None, writable: bool = False) -> None:
    if not isinstance(a, xp.ndarray):
        raise TypeError(f"{where}: argument '{name}' must be a {xp.__name__}.ndarray, got {type(a).__name__}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{where}: argument '{name}' must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            raise ValueError(f"{where}: argument '{name}' must have {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {tuple(a.shape)}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{where}: argument '{name}' must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{where}: argument '{name}' must be C-contiguous (the kernel indexes it as a flat "
                         "buffer); pass xp.ascontiguousarray(...)")
    if writable and not getattr(a.flags, "writeable", True):
        raise ValueError(f"{where}: argument '{name}' is updated in place and must be writable")


def _suffix(a: Any, name: str, where: str, half: bool = False) -> str:
    """The kernel-name suffix of `a`'s dtype: f32 / f64, and with `half` also f16 / bf16."""
    suffix = _SUFFIX.get(np.dtype(a.dtype))
    if suffix is None and half:
        suffix = _HALF_SUFFIX.get(np.dtype(a.dtype))
    if suffix is None:
        also = " (or float16 / bfloat16)" if half else ""
        raise TypeError(f"{where}: argument '{name}' must be float32 or float64{also} for the CUDA kernels, "
                        f"got {a.dtype}")
    return suffix


def _i32(value: int, name: str, where: str) -> np.int32:
    if not 0 <= int(value) <= INT32_MAX:
        raise ValueError(f"{where}: '{name}' = {value} does not fit the kernel's int parameter (0..{INT32_MAX})")
    return np.int32(value)


def _shape4(shape: Any, name: str, where: str) -> tuple[int, int, int, int]:
    if not (isinstance(shape, (tuple, list)) and len(shape) == 4
            and all(is_int(s) and s >= 1 for s in shape)):
        raise ValueError(f"{where}: argument '{name}' must be 4 positive ints (N, C, H, W), got {shape!r}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def grid_for(total: int) -> int:
    """Blocks for a grid-stride kernel over `total` items: enough to cover it, never over MAX_GRID."""
    return max(1, min(math.ceil(total / BLOCK), MAX_GRID))


def plane_launch(where: str, rows: int, positions: int, *int_sizes: int) -> tuple[tuple[int, int], tuple[int]]:
    """(grid, block) for the 2-D kernels (im2col, col2im, max-pool): grid y over `rows` (planes,
    or cols rows), x over a row's `positions`; both grid-stride past MAX_GRID. A row shorter than
    BLOCK gets a block of its length rounded up to a warp, so few threads idle. The kernels index
    rows, positions and `int_sizes` with 32-bit ints: each must fit one."""
    for value in (rows, positions, *int_sizes):
        _i32(value, "a plane or row count", where)
    block = min(BLOCK, max(32, -(-positions // 32) * 32))
    # About PLANE_BLOCKS blocks in all, each looping over several rows: one block per (row, 256
    # positions) made ~500k blocks of one element per thread for a 64x64x56x56 im2col on an H200,
    # and ran slower than the flat kernel. Rows are split across blocks only when there are few.
    grid_y = max(1, min(rows, MAX_GRID, PLANE_BLOCKS))
    grid_x = max(1, min(-(-positions // block), -(-PLANE_BLOCKS // grid_y), MAX_GRID))
    return (grid_x, grid_y), (block,)


def _geometry(where: str, h: int, w: int, kh: int, kw: int, stride: Any, padding: Any,
              dilation: Any = (1, 1)) -> tuple[Pair, Pair, Pair, int, int]:
    kh = pair(kh, "kh", where, minimum=1)[0]
    kw = pair(kw, "kw", where, minimum=1)[0]
    stride = pair(stride, "stride", where, minimum=1)
    padding = pair(padding, "padding", where, minimum=0)
    dilation = pair(dilation, "dilation", where, minimum=1)
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: input of spatial size {(h, w)} gives an empty output for kernel {(kh, kw)}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}")
    if h * w > INT32_MAX or oh * ow > INT32_MAX:
        raise ValueError(f"{where}: spatial plane {(h, w)} is too large for int32 indexing")
    return stride, padding, dilation, oh, ow


def _ints(where: str, **values: int) -> tuple[np.int32, ...]:
    return tuple(_i32(v, k, where) for k, v in values.items())


def _memo_plan(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A launch plan (geometry, grid, the kernel's int scalars) depends only on shapes, geometry and
    this module's launch constants, so it is computed once per key: the checks and conversions cost
    tens of microseconds per launch, as much as a small kernel on an H200. Errors are not cached
    (they re-raise on every call); an unhashable argument (a list for a stride) skips the cache."""
    cached = functools.lru_cache(maxsize=1024)(lambda _constants, *args: fn(*args))

    @functools.wraps(fn)
    def plan(*args: Any) -> Any:
        try:
            hash(args)
        except TypeError:
            return fn(*args)
        return cached((MAX_GRID, PLANE_BLOCKS, BN_MIN_PART, BN_TARGET_BLOCKS), *args)
    return plan


@_memo_plan
def _unfold_plan(where: str, n: int, c: int, h: int, w: int, kh: Any, kw: Any, stride: Any, padding: Any,
                 dilation: Any) -> tuple[int, int, Any, Any, tuple[np.int32, ...]]:
    """(OH, OW, grid, block, int scalars) of im2col (where="im2col") or col2im."""
    (sh, sw), (ph, pw), (dh, dw), oh, ow = _geometry(where, h, w, kh, kw, stride, padding, dilation)
    kh, kw = int(kh), int(kw)
    if where == "im2col":
        grid, block = plane_launch(where, n * c * kh * kw, oh * ow, h * w)
    else:
        grid, block = plane_launch(where, n * c, h * w, oh * ow)
    ints = _ints(where, N=n, C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw, OH=oh, OW=ow)
    return oh, ow, grid, block, ints


@_memo_plan
def _pool_plan(where: str, n: int, c: int, h: int, w: int, kh: Any, kw: Any, stride: Any,
               padding: Any) -> tuple[int, int, Any, Any, tuple[np.int32, ...]]:
    """(OH, OW, grid, block, int scalars) of the max-pool forward or backward kernel."""
    (sh, sw), (ph, pw), _, oh, ow = _geometry(where, h, w, kh, kw, stride, padding)
    kh, kw = int(kh), int(kw)
    if where == "maxpool2d_forward":
        grid, block = plane_launch(where, n * c, oh * ow, h * w)
    else:
        grid, block = plane_launch(where, n * c, h * w, oh * ow)
    ints = _ints(where, N=n, C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, OH=oh, OW=ow)
    return oh, ow, grid, block, ints


# -- im2col.cu --------------------------------------------------------------------------------
# im2col / col2im / maxpool2d_*: float32, float64, float16 and bfloat16 (ml_dtypes) arrays. The
# 16-bit im2col and max-pool forward only copy and compare, so they are bit-exact; col2im and the max-pool
# backward sum 16-bit values in float and round once (kernels/im2col.cu, maxpool.cu).
def im2col(kernels: KernelCache, xp: Any, x: Any, kh: int, kw: int, stride: Any, padding: Any,
           dilation: Any) -> Any:
    where = "im2col"
    _check_array(xp, x, "x", where, ndim=4)
    sfx = _suffix(x, "x", where, half=True)
    n, c, h, w = x.shape
    oh, ow, grid, block, ints = _unfold_plan(where, n, c, h, w, kh, kw, stride, padding, dilation)
    cols = xp.empty((n, c * int(kh) * int(kw), oh * ow), dtype=x.dtype)
    if cols.size:
        kernels.function("im2col", f"im2col_{sfx}")(grid, block, (x, cols, *ints))
    return cols


def col2im(kernels: KernelCache, xp: Any, cols: Any, x_shape: Any, kh: int, kw: int, stride: Any, padding: Any,
           dilation: Any) -> Any:
    where = "col2im"
    n, c, h, w = _shape4(x_shape, "x_shape", where)
    oh, ow, grid, block, ints = _unfold_plan(where, n, c, h, w, kh, kw, stride, padding, dilation)
    _check_array(xp, cols, "cols", where, shape=(n, c * int(kh) * int(kw), oh * ow))
    sfx = _suffix(cols, "cols", where, half=True)
    x = xp.empty((n, c, h, w), dtype=cols.dtype)
    kernels.function("im2col", f"col2im_{sfx}")(grid, block, (cols, x, *ints))
    return x


# -- maxpool.cu -------------------------------------------------------------------------------
def maxpool2d_forward(kernels: KernelCache, xp: Any, x: Any, kh: int, kw: int, stride: Any,
                      padding: Any) -> tuple[Any, Any]:
    where = "maxpool2d_forward"
    _check_array(xp, x, "x", where, ndim=4)
    sfx = _suffix(x, "x", where, half=True)
    n, c, h, w = x.shape
    oh, ow, grid, block, ints = _pool_plan(where, n, c, h, w, kh, kw, stride, padding)
    y = xp.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = xp.empty((n, c, oh, ow), dtype=np.int32)
    if y.size:
        kernels.function("maxpool", f"maxpool2d_fwd_{sfx}")(grid, block, (x, y, argmax, *ints))
    return y, argmax


def maxpool2d_backward(kernels: KernelCache, xp: Any, dy: Any, argmax: Any, x_shape: Any, kh: int, kw: int,
                       stride: Any, padding: Any) -> Any:
    where = "maxpool2d_backward"
    n, c, h, w = _shape4(x_shape, "x_shape", where)
    oh, ow, grid, block, ints = _pool_plan(where, n, c, h, w, kh, kw, stride, padding)
    _check_array(xp, dy, "dy", where, shape=(n, c, oh, ow))
    sfx = _suffix(dy, "dy", where, half=True)
    _check_array(xp, argmax, "argmax", where, dtype=np.int32, shape=(n, c, oh, ow))
    dx = xp.empty((n, c, h, w), dtype=dy.dtype)
    kernels.function("maxpool", f"maxpool2d_bwd_{sfx}")(grid, block, (dy, argmax, dx, *ints))
    return dx


# -- batchnorm.cu -----------------------------------------------------------------------------
def _bn_layout(xp: Any, x: Any, where: str, name: str = "x") -> tuple[str, int, int, int]:
    """(dtype suffix, N, C, S) for (N, C, *spatial) input, S = product of the spatial sizes (1 for 2-D).
    float32, float64, float16 or bfloat16 (the 16-bit kernels of batchnorm.cu's GPUNN_HALF sections)."""
    _check_array(xp, x, name, where)
    if x.ndim < 2:
        raise ValueError(f"{where}: argument '{name}' must have at least 2 dimensions (N, C, ...), "
                         f"got shape {tuple(x.shape)}")
    sfx = _suffix(x, name, where, half=True)
    n, c = x.shape[:2]
    s = int(np.prod(x.shape[2:], dtype=np.int64))
    if n < 1 or c < 1 or s < 1:
        raise ValueError(f"{where}: argument '{name}' must be non-empty, got shape {tuple(x.shape)}")
    return sfx, n, c, s


def _bn_acc(dtype: Any) -> np.dtype:
    """The dtype of batch norm's statistics for x of `dtype` (norm.py's stat_dtype): float32 for the
    16-bit types (their running statistics, saved mean / invstd and part buffers), else x's own."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype in _HALF_SUFFIX else dtype


def bn_parts(c: int, m: int) -> int:
    """How many parts each channel's m elements are cut into: enough that C * parts blocks fill the
    GPU (BN_TARGET_BLOCKS), none smaller than BN_MIN_PART elements (a block's fixed cost)."""
    return max(1, min(math.ceil(m / BN_MIN_PART), math.ceil(BN_TARGET_BLOCKS / c)))


@_memo_plan
def _bn_plan(where: str, n: int, c: int, s: int) -> tuple[tuple[np.int32, ...], int, np.int32, Any, Any, Any]:
    """(N, C, S as kernel ints, parts, parts as a kernel int, the per-part kernels' (parts,
    channels) grid, the per-channel grid, the per-element grid)."""
    ints = _ints(where, N=n, C=c, S=s)
    _i32(n * s, "N*S (elements per channel)", where)
    parts = bn_parts(c, n * s)
    part_grid = (min(parts, MAX_GRID), min(c, MAX_GRID))  # both kernel loops stride past MAX_GRID
    return ints, parts, _i32(parts, "parts", where), part_grid, (grid_for(c),), (grid_for(n * c * s),)


def _per_channel(xp: Any, where: str, dtype: Any, c: int, writable: bool = False, **arrays: Any) -> None:
    for name, a in arrays.items():
        _check_array(xp, a, name, where, dtype=dtype, shape=(c,), writable=writable)


def batchnorm_forward_train(kernels: KernelCache, xp: Any, x: Any, gamma: Any, beta: Any, running_mean: Any,
                            running_var: Any, momentum: float, eps: float) -> tuple[Any, Any, Any]:
    where = "batchnorm_forward_train"
    sfx, n, c, s = _bn_layout(xp, x, where)
    acc = _bn_acc(x.dtype)  # 16-bit x: float32 statistics, running and saved (gamma / beta are x's dtype)
    _per_channel(xp, where, x.dtype, c, gamma=gamma, beta=beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{where}: arguments 'running_mean' and 'running_var' must both be arrays or both None")
    update = running_mean is not None
    if update:
        _per_channel(xp, where, acc, c, writable=True, running_mean=running_mean, running_var=running_var)
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{where}: argument 'momentum' must be in [0, 1], got {momentum!r}")
    if not float(eps) > 0.0:
        raise ValueError(f"{where}: argument 'eps' must be > 0, got {eps!r}")
    scalar = acc.type
    y = xp.empty_like(x)
    mean = xp.empty((c,), dtype=acc)
    invstd = xp.empty((c,), dtype=acc)
    # With no running statistics the kernel never touches those pointers; pass the saved buffers.
    rm, rv = (running_mean, running_var) if update else (mean, invstd)
    ints, parts, p32, part_grid, channel_grid, element_grid = _bn_plan(where, n, c, s)
    part_mean = xp.empty((c, parts), dtype=acc)
    part_m2 = xp.empty((c, parts), dtype=acc)
    kernels.function("batchnorm", f"bn_part_stats_{sfx}")(part_grid, (BLOCK,), (x, part_mean, part_m2, *ints, p32))
    kernels.function("batchnorm", f"bn_finalize_stats_{sfx}")(
        channel_grid, (BLOCK,), (part_mean, part_m2, mean, invstd, rm, rv, *ints, p32, scalar(momentum),
                                 scalar(eps), np.int32(1 if update else 0)))
    kernels.function("batchnorm", f"bn_apply_{sfx}")(element_grid, (BLOCK,), (x, gamma, beta, mean, invstd, y, *ints))
    return y, mean, invstd


def batchnorm_forward_infer(kernels: KernelCache, xp: Any, x: Any, gamma: Any, beta: Any, running_mean: Any,
                            running_var: Any, eps: float) -> Any:
    where = "batchnorm_forward_infer"
    sfx, n, c, s = _bn_layout(xp, x, where)
    acc = _bn_acc(x.dtype)
    _per_channel(xp, where, x.dtype, c, gamma=gamma, beta=beta)
    _per_channel(xp, where, acc, c, running_mean=running_mean, running_var=running_var)
    if not float(eps) > 0.0:
        raise ValueError(f"{where}: argument 'eps' must be > 0, got {eps!r}")
    y = xp.empty_like(x)
    ints, _, _, _, _, element_grid = _bn_plan(where, n, c, s)
    kernels.function("batchnorm", f"bn_fwd_infer_{sfx}")(
        element_grid, (BLOCK,), (x, gamma, beta, running_mean, running_var, y, *ints, acc.type(eps)))
    return y


def batchnorm_backward(kernels: KernelCache, xp: Any, dy: Any, x: Any, gamma: Any, mean: Any,
                       invstd: Any) -> tuple[Any, Any, Any]:
    where = "batchnorm_backward"
    sfx, n, c, s = _bn_layout(xp, x, where)
    acc = _bn_acc(x.dtype)  # 16-bit x: float32 mean / invstd; dgamma / dbeta in gamma's (= x's) dtype
    _check_array(xp, dy, "dy", where, dtype=x.dtype, shape=x.shape)
    _per_channel(xp, where, x.dtype, c, gamma=gamma)
    _per_channel(xp, where, acc, c, mean=mean, invstd=invstd)
    dx = xp.empty_like(x)
    dgamma = xp.empty((c,), dtype=x.dtype)
    dbeta = xp.empty((c,), dtype=x.dtype)
    ints, parts, p32, part_grid, channel_grid, element_grid = _bn_plan(where, n, c, s)
    part_dy = xp.empty((c, parts), dtype=acc)
    part_dyx = xp.empty((c, parts), dtype=acc)
    kernels.function("batchnorm", f"bn_part_grad_sums_{sfx}")(part_grid, (BLOCK,),
                                                             (dy, x, mean, invstd, part_dy, part_dyx, *ints, p32))
    if acc == x.dtype:
        finalize_args, dg_acc, db_acc = (part_dy, part_dyx, dgamma, dbeta), dgamma, dbeta
    else:  # 16-bit: the float32 sums (which dx uses unrounded) besides the rounded gradients
        dg_acc, db_acc = xp.empty((c,), dtype=acc), xp.empty((c,), dtype=acc)
        finalize_args = (part_dy, part_dyx, dg_acc, db_acc, dgamma, dbeta)
    kernels.function("batchnorm", f"bn_finalize_grad_{sfx}")(channel_grid, (BLOCK,), (*finalize_args, ints[1], p32))
    kernels.function("batchnorm", f"bn_bwd_apply_{sfx}")(element_grid, (BLOCK,),
                                                        (dy, x, gamma, mean, invstd, dg_acc, db_acc, dx, *ints))
    return dx, dgamma, dbeta


# -- adam.cu ----------------------------------------------------------------------------------
def adam_step(kernels: KernelCache, xp: Any, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, step: int, decoupled: bool,
              zero_grad: bool = False) -> None:
    where = "adam_step"
    _check_array(xp, param, "param", where, ndim=1, writable=True)
    sfx = _suffix(param, "param", where)
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        _check_array(xp, a, name, where, dtype=param.dtype, shape=param.shape, writable=True)
    int_arg(step, "step", where, 1)
    for name, val in (("beta1", beta1), ("beta2", beta2)):
        real_arg(val, name, where, 0, 1, hi_open=True)
    for name, val in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        real_arg(val, name, where, 0, want="a finite number >= 0")
    t = param.dtype.type
    # Bias corrections in double on the host, once; the kernel only multiplies and divides.
    c = adam_constants(lr, beta1, beta2, eps, step)
    l2 = 0.0 if decoupled else float(weight_decay)
    decay = 1.0 - float(lr) * float(weight_decay) if decoupled else 1.0
    scalars = (t(beta1), t(1.0 - float(beta1)), t(beta2), t(1.0 - float(beta2)), t(eps), t(c.lr_t),
               t(c.sqrt_bc2), t(l2), t(decay), np.int32(1 if zero_grad else 0))
    _adam_launches(kernels.function("adam", f"adam_step_{sfx}"), sfx, (param, grad, m, v), scalars)


def _adam_launches(fn: Any, sfx: str, buffers: tuple[Any, Any, Any, Any], after_n: tuple) -> None:
    """Launch an Adam kernel over (param, grad, m, v) in chunks below 2^30 elements (`n` is an int),
    with `after_n` the arguments that follow n."""
    total = buffers[0].size
    for start in range(0, total, ADAM_CHUNK):
        stop = min(start + ADAM_CHUNK, total)
        threads = (stop - start + 3) // 4 if sfx == "f32" else stop - start  # float32: one thread per float4
        fn((grid_for(threads),), (BLOCK,), (*(b[start:stop] for b in buffers), np.int32(stop - start), *after_n))


def adam_step_device(kernels: KernelCache, xp: Any, param: Any, grad: Any, m: Any, v: Any, scalars: Any,
                     beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool,
                     zero_grad: bool = False) -> None:
    """adam_step with lr and step read by the kernel from `scalars` ([lr, step, ...], a float64 device
    array): the launch's scalar arguments do not change from step to step, so a CUDA graph that
    captured it replays it with the current lr and step (kernels/adam.cu, adam_step_dev_*)."""
    where = "adam_step_device"
    _check_array(xp, param, "param", where, ndim=1, writable=True)
    sfx = _suffix(param, "param", where)
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        _check_array(xp, a, name, where, dtype=param.dtype, shape=param.shape, writable=True)
    check_step_scalars(where, scalars, xp)
    for name, val in (("beta1", beta1), ("beta2", beta2)):
        real_arg(val, name, where, 0, 1, hi_open=True)
    for name, val in (("eps", eps), ("weight_decay", weight_decay)):
        real_arg(val, name, where, 0, want="a finite number >= 0")
    consts = (np.float64(beta1), np.float64(beta2), np.float64(eps), np.float64(weight_decay),
              np.int32(1 if decoupled else 0), np.int32(1 if zero_grad else 0))
    _adam_launches(kernels.function("adam", f"adam_step_dev_{sfx}"), sfx, (param, grad, m, v), (scalars, *consts))


def adam_step_mixed(kernels: KernelCache, xp: Any, param: Any, grad: Any, m: Any, v: Any, scalars: Any,
                    beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool, inv_scale: Any,
                    found_inf: Any) -> None:
    """Mixed-precision Adam/AdamW (kernels/adam.cu, adam_step_mixed_f16 / _bf16): float32 param, m, v,
    a float16 / bfloat16 grad unscaled by inv_scale[0] on the device, the whole update skipped on the
    device when found_inf[0] != 0. lr and step come from `scalars` as in adam_step_device; no argument
    changes from step to step, so the launch can be captured. No AMSGrad (the backend routes max_v
    to the generic op)."""
    where = "adam_step_mixed"
    _check_array(xp, param, "param", where, dtype=np.float32, ndim=1, writable=True)
    _check_array(xp, grad, "grad", where, shape=param.shape)
    sfx = _HALF_SUFFIX.get(np.dtype(grad.dtype))
    if sfx is None:
        raise TypeError(f"{where}: argument 'grad' must be float16 or bfloat16 (ml_dtypes.bfloat16), got {grad.dtype}")
    for name, a in (("m", m), ("v", v)):
        _check_array(xp, a, name, where, dtype=np.float32, shape=param.shape, writable=True)
    _check_array(xp, inv_scale, "inv_scale", where, dtype=np.float32, shape=(1,))
    _check_array(xp, found_inf, "found_inf", where, dtype=np.int32, shape=(1,))
    check_step_scalars(where, scalars, xp)
    for name, val in (("beta1", beta1), ("beta2", beta2)):
        real_arg(val, name, where, 0, 1, hi_open=True)
    for name, val in (("eps", eps), ("weight_decay", weight_decay)):
        real_arg(val, name, where, 0, want="a finite number >= 0")
    fn = kernels.function("adam", f"adam_step_mixed_{sfx}")
    after = (scalars, inv_scale, found_inf, np.float64(beta1), np.float64(beta2), np.float64(eps),
             np.float64(weight_decay), np.int32(1 if decoupled else 0))
    total = int(param.size)
    for start in range(0, total, ADAM_CHUNK):  # `n` is an int
        stop = min(start + ADAM_CHUNK, total)
        fn((grid_for(stop - start),), (BLOCK,),
           (param[start:stop], grad[start:stop], m[start:stop], v[start:stop], *after, np.int32(stop - start)))
