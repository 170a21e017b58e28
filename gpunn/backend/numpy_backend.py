"""The CPU backend: NumPy, with CPU-specific fast paths for convolution and pooling.

The generic ops (gpunn/backend/ops/*.py) keep the layouts the CUDA kernels implement: im2col's
(N, C*kh*kw, OH*OW) columns, max-pool's int32 flat argmax. On a CPU most of their time goes to
memory reshuffling, not arithmetic, so this backend overrides the ops whose cache the layers treat
as opaque:

- **Convolution at stride 1** ("frame" algorithm). The input is padded once into a channel-major
  buffer X of shape (C, N*Hp*Wp): every sample's padded frame laid end to end. For kernel offset
  (i, j) the input pixel under output position p is X[:, p + i*dh*Wp + j*dw], so each offset's
  column block is a *contiguous* slice of X, and one GEMM W(F, kh*kw*C) @ cols gives the output
  at every frame position (the positions outside the valid OHxOW corner are computed and
  dropped). The columns are built per chunk (about 1 MiB) so they stay in cache, and the
  backward pass rebuilds them from X instead of keeping them: the cache holds X only. dW is the
  chunked product dy_frames @ cols^T over a zero-framed dy; dX is either W^T dy added back at each
  offset's shift (C < F) or the correlation of the zero-framed dy with the flipped kernel (C >= F):
  the smaller columns, and at C == F the correlation (a copy in cache beats a read-add-write pass).
  Scratch buffers are reused across calls, per thread.
  Outputs are returned as NCHW views of channel-major (C, N, H, W) memory, so the next layer's
  padding copy and the pooling read long contiguous rows; NumPy's elementwise ops keep that layout.
- **Max-pooling with non-overlapping windows** (stride == window, no padding) reads the kh*kw
  window offsets as strided views and tracks the winning offset with arithmetic (NumPy's masked
  copies are ~10x slower); argmax keeps the int32 flat-index contract and first-offset ties. The
  backward pass writes each offset's share straight into its strided slot, with no scatter-add.
Anything else (strided convolutions, overlapping or padded pools) runs the generic op.

With numba installed (the `cpu-jit` extra) some of these run compiled kernels from
gpunn/backend/cpu_jit_ops.py instead, each with the NumPy code above as its fallback: the tiled
max-pool (one pass; the generic op's NaN rule), batch norm forward/backward (two passes each), and
for small convolutions (DIRECT_MAX_WEIGHTS, DIRECT_DX_MAX_WEIGHTS) the frame products computed
directly, without columns.

Results agree with the generic path to rounding (the GEMMs sum in another order); the parity
tests in tests/test_numpy_fast_paths.py pin that down in float64.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from gpunn.backend import cpu_jit, cpu_jit_ops, cpu_threads
from gpunn.backend.base import Backend
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.backend.ops.norm import stat_dtype, update_running_stats

Pair = tuple[int, int]

# Columns per chunk: about this many bytes of cols per GEMM. Bigger GEMMs amortize OpenBLAS's
# packing of the weights; measured at batch 128, 2 threads (fwd/bwd ms, CIFAR 32->32 conv at 32x32):
# 1 MiB 45.7/77.3, 2 MiB 37.0/72.9, 4 MiB 33.7/55.2, 8 MiB 30.8/67.6.
_CHUNK_BYTES = 4 << 20
# The forward keeps its window columns for dW up to this size (LeNet-5's second conv: 7.7 MB).
_KEEP_COLS_BYTES = 16 << 20
# Frame positions per group of samples when the numba direct kernels run (no columns to fit in cache).
_DIRECT_GROUP = 1 << 15
# With numba installed, small convolutions run direct kernels (cpu_jit_ops.frame_corr/frame_dw)
# instead of building columns for a starved GEMM. Measured at batch 128, 2 threads, best of 40
# (GEMM on window columns -> direct): LeNet-5's first conv (150 weights) forward 1.4 -> 0.9 ms,
# dW 2.9 -> 1.3 ms; its second (2400 weights) forward 1.1 -> 1.4 ms, backward 2.6 -> 2.8 ms with
# dW direct and 2.6 -> 2.9 ms with dX direct (against W^T dy scattered back by the numba
# col2im); the CIFAR CNN's first (864) dW 12 -> 7 ms, forward even. Hence one limit per product.
DIRECT_MAX_WEIGHTS = 512  # forward
DIRECT_DW_MAX_WEIGHTS = 1024
DIRECT_DX_MAX_WEIGHTS = 1024  # and only when C < F


def _flat(a: Any) -> np.ndarray | None:
    """A 1-D view of every element of `a` in memory order, when `a` is a float array that fills
    its memory densely in some axis order (NCHW, or the channel-major views the convs return)."""
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.size == 0:
        return None
    if a.flags.c_contiguous:
        return a.reshape(-1)
    t = a.transpose(np.argsort([-abs(st) for st in a.strides], kind="stable"))
    return t.reshape(-1) if t.flags.c_contiguous else None


class _FrameCache:
    """What the fast conv forward keeps for its backward: the padded channel-major input."""

    __slots__ = ("xbuf", "x_shape", "frame", "kernel", "padding", "dilation", "cols", "pool", "pooled", "argmax")

    def __init__(self, xbuf: np.ndarray, x_shape: tuple[int, ...], frame: Pair, kernel: Pair, padding: Pair,
                 dilation: Pair, cols: np.ndarray | None = None) -> None:
        self.xbuf, self.x_shape, self.frame = xbuf, x_shape, frame
        self.kernel, self.padding, self.dilation = kernel, padding, dilation
        #: the forward's window columns (kh*kw*C, N*OH*OW), when small enough to keep for dW
        self.cols = cols
        #: with a fused max-pool: its window, and its output and argmax, channel-major (F, N, PH, PW)
        self.pool: Pair | None = None
        self.pooled: np.ndarray | None = None
        self.argmax: np.ndarray | None = None


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"

    def __init__(self, fast_paths: bool = True) -> None:
        super().__init__(np)
        #: False routes every op to the generic implementation (for parity tests and benchmarks)
        self.fast_paths = fast_paths
        # Scratch reused across calls (no page faults per step); per thread, as backends are shared.
        self._scratch = threading.local()

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
        """A scratch array that lives only inside one op call, reused across calls.

        With zero=True it is zeroed when first made; callers then only write the region they
        rewrite on every call, so the rest stays zero."""
        store = self._scratch.__dict__
        full_key = (key, shape, np.dtype(dtype).str)
        buf = store.get(full_key)
        if buf is None:
            if len(store) > 64:  # shapes vary (e.g. a last short batch): keep the cache bounded
                store.clear()
            buf = store[full_key] = (np.zeros if zero else np.empty)(shape, dtype=dtype)
        return buf

    def release_scratch(self) -> None:
        """Drop this thread's reused scratch buffers (they are remade on the next call)."""
        self._scratch.__dict__.clear()

    # -- optimizers ---------------------------------------------------------------------------
    def adam_step(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, step: int, decoupled: bool, zero_grad: bool = False,
                  max_v: Any = None) -> None:
        """The fused numba kernel (gpunn/backend/cpu_jit.py) when numba is installed; otherwise,
        and for AMSGrad or unusual arrays, the generic chunked path (which also reports bad input)."""
        if self.fast_paths and max_v is None and cpu_jit.adam_step(
                param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, zero_grad=zero_grad):
            return
        super().adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled,
                          zero_grad=zero_grad, max_v=max_v)

    # -- dense and activations ----------------------------------------------------------------
    def matmul(self, a: Any, b: Any) -> Any:
        """2-D float products split by rows over gpunn's CPU threads (BLAS held to one thread)."""
        if not (self.fast_paths and isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == 2
                and b.ndim == 2 and a.shape[1] == b.shape[0] and a.dtype.kind == "f" and b.dtype.kind == "f"):
            return super().matmul(a, b)
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a.dtype, b.dtype))

        def rows(lo: int, hi: int) -> None:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        cpu_threads.parallel_for(rows, a.shape[0], work=a.size * b.shape[1] // 256)
        return out

    def relu_forward(self, x: Any) -> Any:
        xf = _flat(x) if self.fast_paths else None
        if xf is None:
            return super().relu_forward(x)
        y = np.empty_like(x)  # the same memory order as x, so the flat views line up
        yf = _flat(y)
        if y.strides != x.strides or yf is None or not cpu_jit_ops.relu_forward(xf, yf):
            return super().relu_forward(x)
        return y

    def relu_backward(self, dy: Any, y: Any) -> Any:
        yf = _flat(y) if self.fast_paths else None
        dyf = _flat(dy) if yf is not None and getattr(dy, "strides", None) == y.strides else None
        if dyf is None or dy.dtype != y.dtype:
            return super().relu_backward(dy, y)
        dx = np.empty_like(dy)
        dxf = _flat(dx)
        if dx.strides != dy.strides or dxf is None or not cpu_jit_ops.relu_backward(dyf, yf, dxf):
            return super().relu_backward(dy, y)
        return dx

    # -- convolution --------------------------------------------------------------------------
    def _frame_ok(self, x: Any, weight: Any, stride: Pair) -> bool:
        return (self.fast_paths and stride == (1, 1) and x.dtype.kind == "f" and weight.dtype.kind == "f"
                and x.shape[0] > 0)

    @staticmethod
    def _direct(weight: np.ndarray, product: str = "forward") -> bool:
        """Whether this conv's weights are few enough for the numba direct kernel computing
        `product` ("forward", "dw" or "dx")."""
        limit = {"forward": DIRECT_MAX_WEIGHTS, "dw": DIRECT_DW_MAX_WEIGHTS, "dx": DIRECT_DX_MAX_WEIGHTS}[product]
        return weight.size <= limit and cpu_jit.numba_available()

    def _frame_chunks(self, src: np.ndarray, base: int, offsets: list[int], count: int,
                      dtype: np.dtype) -> Any:
        """Yield (start, stop, cols) over output positions [0, count) of the frame grid, where
        cols[o*C + c, q - start] = src[c, base + q + offsets[o]] (C = src rows): the im2col
        columns of one chunk, each offset's block a contiguous slice copy. The buffer is reused."""
        c = src.shape[0]
        k = c * len(offsets)
        step = int(max(1024, min(count, _CHUNK_BYTES // (k * dtype.itemsize))))
        cols = self._buffer("cols", (k, step), dtype)
        for start in range(0, count, step):
            stop = min(count, start + step)
            m = stop - start
            for o, off in enumerate(offsets):
                a = base + start + off
                cols[o * c:(o + 1) * c, :m] = src[:, a:a + m]
            yield start, stop, cols[:, :m]

    def _frame_product(self, src: np.ndarray, base: int, offsets: list[int], w: np.ndarray, count: int,
                       out: np.ndarray, direct: bool, frame: int = 0, span: int = 0) -> None:
        """out[:, q] = w @ cols[:, q] for q < count, cols as in _frame_chunks (out contiguous):
        the numba kernel without columns when `direct`, else chunked GEMMs."""
        if direct and cpu_jit_ops.frame_corr(src, base, np.array(offsets), w, count, out, frame, span):
            return
        for start, stop, cols in self._frame_chunks(src, base, offsets, count, out.dtype):
            np.matmul(w, cols, out=out[:, start:stop])

    def _window_cols(self, xbuf: np.ndarray, s0: int, s1: int, kernel: Pair, dilation: Pair, out_hw: Pair,
                     group: int, out: np.ndarray | None = None) -> np.ndarray:
        """The im2col columns of samples [s0, s1) at valid output positions only, (kh*kw*C, m*OH*OW):
        row (i*kw + j)*C + c holds the padded input xbuf[c, s, y + i*dh, x + j*dw] (W's row order
        after transpose(0, 2, 3, 1)). Into `out` (rows of unit stride) or a reused buffer."""
        c = xbuf.shape[0]
        (kh, kw), (dh, dw), (oh, ow) = kernel, dilation, out_hw
        m = s1 - s0
        cols = out if out is not None else \
            self._flat_scratch("wcols", kh * kw * c, m * oh * ow, kh * kw * c * group * oh * ow, xbuf.dtype)
        if cpu_jit_ops.im2col_window(xbuf, s0, kernel, dilation, out_hw, cols):
            return cols
        cv = cols.view()
        cv.shape = (kh * kw, c, m, oh, ow)  # raises rather than copy
        for i in range(kh):
            for j in range(kw):
                cv[i * kw + j] = xbuf[:, s0:s1, i * dh:i * dh + oh, j * dw:j * dw + ow]
        return cols

    @staticmethod
    def _frame_group(rows: int, frame_len: int, n: int, dtype: np.dtype) -> int:
        """Samples per group: about one cache-sized chunk of im2col columns (`rows` high), or
        _DIRECT_GROUP positions when no columns are built (rows == 0): each group costs a few
        kernel calls, so groups must not be tiny."""
        positions = _CHUNK_BYTES // (rows * dtype.itemsize) if rows else _DIRECT_GROUP
        return max(1, min(n, positions // frame_len))

    def _flat_scratch(self, key: str, rows: int, cols: int, size: int, dtype: np.dtype) -> np.ndarray:
        """A contiguous (rows, cols) view of a reused 1-D scratch of `size` elements."""
        return self._buffer(key, (size,), dtype)[:rows * cols].reshape(rows, cols)

    def conv2d_forward(self, x: Any, weight: Any, bias: Any | None, stride: Pair, padding: Pair,
                       dilation: Pair, relu: bool = False) -> tuple[Any, Any]:
        if not self._frame_ok(x, weight, stride):
            return super().conv2d_forward(x, weight, bias, stride, padding, dilation, relu)
        return self._conv_forward(x, weight, bias, padding, dilation, relu, None)

    def conv2d_relu_maxpool_forward(self, x: Any, weight: Any, bias: Any | None, stride: Pair, padding: Pair,
                                    dilation: Pair, pool: Pair) -> tuple[Any, Any]:
        """Pools each group of samples while its conv output is in cache; the whole output is
        never stored (the backward needs only the pooled output and argmax)."""
        if not (self._frame_ok(x, weight, stride) and self._tiled_pool(*pool, pool, (0, 0))):
            return super().conv2d_relu_maxpool_forward(x, weight, bias, stride, padding, dilation, pool)
        return self._conv_forward(x, weight, bias, padding, dilation, True, pool)

    def _conv_forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, padding: Pair,
                      dilation: Pair, relu: bool, pool: Pair | None) -> tuple[np.ndarray, _FrameCache]:
        n, c, h, w = x.shape
        f, _, kh, kw = weight.shape
        (ph, pw), (dh, dw) = padding, dilation
        oh, ow = conv_output_size(h, kh, 1, ph, dh), conv_output_size(w, kw, 1, pw, dw)
        hp, wp = h + 2 * ph, w + 2 * pw
        frame_len = hp * wp
        dtype = np.result_type(x.dtype, weight.dtype)
        # X: (C, N*Hp*Wp), every padded frame end to end; kept for the backward pass.
        xbuf = (np.zeros if (ph or pw) else np.empty)((c, n, hp, wp), dtype=dtype)
        xflat = xbuf.reshape(c, n * frame_len)
        xt = x.transpose(1, 0, 2, 3)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        lead = offsets[-1]  # every frame's last `lead` positions are outside its OHxOW corner
        span = (oh - 1) * wp + ow  # a frame's positions up to its last output: the direct kernel's share
        wmat = np.ascontiguousarray(weight.transpose(0, 2, 3, 1), dtype=dtype).reshape(f, -1)
        direct = self._direct(weight)
        # The output, channel-major, returned as an NCHW view: the conv's, or the pool's of it.
        if pool is None:
            yc = np.empty((f, n, oh, ow), dtype=dtype)
        else:
            yc = np.empty((f, n, oh // pool[0], ow // pool[1]), dtype=dtype)
            amc = np.empty(yc.shape, dtype=np.int32)
        # Samples per group: the direct kernel works on whole frames; the GEMM on window columns.
        group = self._frame_group(0, frame_len, n, dtype) if direct else \
            self._frame_group(c * kh * kw, oh * ow, n, dtype)
        y2 = yc.reshape(f, n * oh * ow) if pool is None else None
        # Keep the columns for dW when they are small and the backward would rebuild them.
        keep = not direct and not self._direct(weight, "dw") and \
            c * kh * kw * n * oh * ow * dtype.itemsize <= _KEEP_COLS_BYTES
        cols_all = np.empty((c * kh * kw, n * oh * ow), dtype=dtype) if keep else None

        def samples(a: int, b: int) -> None:
            # Pad and multiply one group of samples at a time, so its frames stay in cache. Valid
            # positions read only their own frame, so groups (and threads) are independent.
            for s0 in range(a, b, group):
                s1 = min(b, s0 + group)
                m = s1 - s0
                xbuf[:, s0:s1, ph:ph + h, pw:pw + w] = xt[:, s0:s1]
                # yb: this group's output (F, m, OH, OW), in yc or, when pooling, in scratch
                yb = self._flat_scratch("yblock", f, m * oh * ow, f * group * oh * ow, dtype) \
                    if pool is not None else yc[:, s0:s1]
                if not direct:
                    keep_to = None if cols_all is None else cols_all[:, s0 * oh * ow:s1 * oh * ow]
                    cols = self._window_cols(xbuf, s0, s1, (kh, kw), (dh, dw), (oh, ow), group, keep_to)
                    yg = y2[:, s0 * oh * ow:s1 * oh * ow] if pool is None else yb
                    np.matmul(wmat, cols, out=yg)
                    if bias is not None:
                        yg += bias.reshape(f, 1)
                    yb = yg.reshape(f, m, oh, ow)
                else:
                    yg = self._flat_scratch("yframe", f, m * frame_len, f * group * frame_len, dtype)
                    self._frame_product(xflat, s0 * frame_len, offsets, wmat, m * frame_len - lead, yg, direct,
                                        frame_len, span)
                    yb = yb.reshape(f, m, oh, ow)
                    valid = yg.reshape(f, m, hp, wp)[:, :, :oh, :ow]
                    if bias is not None:
                        np.add(valid, bias.reshape(f, 1, 1, 1), out=yb)
                    else:
                        yb[...] = valid
                if relu:  # while the group is in cache; NaN propagates, as relu_forward
                    np.maximum(yb, dtype.type(0), out=yb)
                if pool is not None:  # the tiled max-pool of the group, on its channel-major view
                    pg, ag = self.maxpool2d_forward(yb.transpose(1, 0, 2, 3), *pool, pool, (0, 0))
                    yc[:, s0:s1] = pg.transpose(1, 0, 2, 3)
                    amc[:, s0:s1] = ag.transpose(1, 0, 2, 3)

        cpu_threads.parallel_for(samples, n, work=x.size + f * n * oh * ow)
        cache = _FrameCache(xbuf, x.shape, (hp, wp), (kh, kw), padding, dilation, cols_all)
        if pool is not None:
            cache.pool, cache.pooled, cache.argmax = pool, yc, amc
        return yc.transpose(1, 0, 2, 3), cache

    def conv2d_backward(self, dy: Any, x_shape: tuple[int, int, int, int], weight: Any, cols: Any,
                        stride: Pair, padding: Pair, dilation: Pair,
                        need_dx: bool = True, relu_y: Any | None = None) -> tuple[Any | None, Any, Any]:
        if not isinstance(cols, _FrameCache) or cols.pool is not None:
            return super().conv2d_backward(dy, x_shape, weight, cols, stride, padding, dilation, need_dx, relu_y)
        return self._conv_backward(dy, x_shape, weight, cols, need_dx, relu_y)

    def conv2d_relu_maxpool_backward(self, dp: Any, x_shape: tuple[int, int, int, int], weight: Any, cache: Any,
                                     stride: Pair, padding: Pair, dilation: Pair, pool: Pair,
                                     need_dx: bool = True) -> tuple[Any | None, Any, Any]:
        """Un-pools each group of samples into scratch, just before the group's products."""
        if not isinstance(cache, _FrameCache):
            return super().conv2d_relu_maxpool_backward(dp, x_shape, weight, cache, stride, padding, dilation, pool,
                                                        need_dx)
        f, nb, php, pwp = cache.pooled.shape
        if getattr(dp, "shape", None) != (nb, f, php, pwp) or cache.pool != tuple(pool):
            raise ValueError(f"conv2d_relu_maxpool_backward: argument 'dp' must have the pooled output's shape "
                             f"{(nb, f, php, pwp)} (pool {cache.pool}), got {getattr(dp, 'shape', None)}")
        return self._conv_backward(dp, x_shape, weight, cache, need_dx, None)

    def _conv_backward(self, dy: np.ndarray, x_shape: tuple[int, int, int, int], weight: np.ndarray,
                       cache: _FrameCache, need_dx: bool, relu_y: np.ndarray | None) -> tuple[Any | None, Any, Any]:
        """dy is the conv's output gradient, or with a fused pool (cache.pool) the pooled one."""
        n, c, h, w = x_shape
        f, _, kh, kw = weight.shape
        hp, wp = cache.frame
        ph, pw = cache.padding
        dh, dw = cache.dilation
        oh, ow = hp - (kh - 1) * dh, wp - (kw - 1) * dw
        frame_len = hp * wp
        dtype = cache.xbuf.dtype
        xflat = cache.xbuf.reshape(c, n * frame_len)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        lead = offsets[-1]
        span = (oh - 1) * wp + ow  # dy is zero past a frame's first `span` positions
        dyc = dy.transpose(1, 0, 2, 3)  # (F, N, OH, OW), a view (or the pooled (F, N, PH, PW))
        if cache.pool is not None:  # the ReLU mask, read at the pooled output: max(relu(.)) > 0
            dpc = np.empty(cache.pooled.shape, dtype=dtype)
            np.multiply(dyc, cache.pooled > 0, out=dpc)
        direct_dw = self._direct(weight, "dw")
        offs = np.array(offsets)
        # dX, per group of samples (so groups and threads are independent): with fewer input than
        # output channels, W^T dy scattered back (col2im) or, for small weights, the numba
        # kernel; otherwise the correlation of the zero-framed dy with the flipped kernel (a
        # GEMM over F*kh*kw columns, each position written once).
        direct_dx = c < f and self._direct(weight, "dx")
        scatter_dx = c < f and not direct_dx
        wmat_t = np.ascontiguousarray(weight.transpose(1, 2, 3, 0), dtype=dtype).reshape(c, -1)
        wmat_s = np.ascontiguousarray(weight.transpose(2, 3, 1, 0), dtype=dtype).reshape(-1, f)
        dxc = np.empty((c, n, h, w), dtype=dtype) if need_dx else None
        gemm_rows = max(0 if direct_dw else c, 0 if direct_dx or not need_dx else f) * kh * kw
        group = self._frame_group(gemm_rows, frame_len, n, dtype)
        need_frame = direct_dw or (need_dx and not scatter_dx)  # dy on the frame grid
        dy2 = dyc.reshape(f, n * oh * ow) if dyc.flags.c_contiguous and cache.pool is None else None
        # The ReLU mask is applied per group, into scratch (dy belongs to the caller).
        ym = None if relu_y is None else relu_y.transpose(1, 0, 2, 3)

        def samples(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            dwacc = np.zeros((c * kh * kw, f), dtype=dtype)  # dW^T: see the GEMM below
            dbacc = np.zeros(f, dtype=dtype)
            part = self._buffer("dwpart", (f, c * kh * kw), dtype)
            part_t = self._buffer("dwpart_t", dwacc.shape, dtype)
            # dy of one group on the frame grid after `lead` zero columns. Only the OHxOW corners
            # are ever written, so everything else stays zero across calls: both products exact.
            dyg = self._buffer(f"dyframe{hp}x{wp}:{oh}x{ow}", (f, lead + group * frame_len), dtype, zero=True)
            for s0 in range(a, b, group):
                s1 = min(b, s0 + group)
                m = s1 - s0
                if cache.pool is not None:  # the tiled max-pool's backward of this group, channel-major
                    am_g = np.ascontiguousarray(cache.argmax[:, s0:s1]).transpose(1, 0, 2, 3)
                    dp_g = np.ascontiguousarray(dpc[:, s0:s1]).transpose(1, 0, 2, 3)
                    dxp = self.maxpool2d_backward(dp_g, am_g, (m, f, oh, ow), *cache.pool, cache.pool, (0, 0))
                    dyw = dxp.transpose(1, 0, 2, 3).reshape(f, m * oh * ow)
                elif dy2 is not None and ym is None:
                    dyw = dy2[:, s0 * oh * ow:s1 * oh * ow]
                else:  # dy masked or in another layout: this group's (F, m*OH*OW) block, once
                    dyw = self._flat_scratch("dywin", f, m * oh * ow, f * group * oh * ow, dtype)
                    if ym is None:
                        dyw.reshape(f, m, oh, ow)[...] = dyc[:, s0:s1]
                    else:
                        np.multiply(dyc[:, s0:s1], ym[:, s0:s1] > 0, out=dyw.reshape(f, m, oh, ow))
                dbacc += dyw.sum(axis=1)
                if need_frame:
                    dyg[:, lead:].reshape(f, group, hp, wp)[:, :m, :oh, :ow] = dyw.reshape(f, m, oh, ow)
                count = m * frame_len - lead  # dy is zero past it
                if direct_dw and cpu_jit_ops.frame_dw(dyg, lead, xflat, s0 * frame_len, offs, count, part,
                                                      frame_len, span):
                    dwacc += part.T
                else:
                    # dW^T = cols @ dy^T over the valid positions: OpenBLAS runs this orientation
                    # 1.2-2x faster than dy @ cols^T (measured, 1 thread: LeNet-5's second conv
                    # 30 -> 56 GFLOP/s, a CIFAR 32->32 conv 63 -> 75).
                    if cache.cols is not None:
                        cols = cache.cols[:, s0 * oh * ow:s1 * oh * ow]
                    else:
                        cols = self._window_cols(cache.xbuf, s0, s1, (kh, kw), (dh, dw), (oh, ow), group)
                    np.matmul(cols, dyw.T, out=part_t)
                    dwacc += part_t
                if dxc is None:
                    continue
                dxg = self._flat_scratch("dxframe", c, m * frame_len, c * group * frame_len, dtype)
                if scatter_dx:
                    # dcols = W^T dy at the valid positions (C*kh*kw rows, the smaller side), each
                    # offset's block added into the zeroed frames at its shift (col2im)
                    dcols = self._flat_scratch("dcols", kh * kw * c, m * oh * ow, kh * kw * c * group * oh * ow, dtype)
                    np.matmul(wmat_s, dyw, out=dcols)
                    dxv = dxg.reshape(c, m, hp, wp)
                    if not cpu_jit_ops.col2im_window(dcols, (kh, kw), (dh, dw), (oh, ow), dxv):
                        dcv = dcols.reshape(kh * kw, c, m, oh, ow)
                        dxv[...] = 0
                        for i in range(kh):
                            for j in range(kw):
                                dxv[:, :, i * dh:i * dh + oh, j * dw:j * dw + ow] += dcv[i * kw + j]
                else:
                    self._frame_product(dyg, lead, [-o for o in offsets], wmat_t, m * frame_len, dxg, direct_dx)
                dxc[:, s0:s1] = dxg.reshape(c, m, hp, wp)[:, :, ph:ph + h, pw:pw + w]
            return dwacc, dbacc

        parts = cpu_threads.parallel_for(samples, n, work=dy.size + n * c * h * w)
        dwmat, dbias = parts[0]
        for dwp, dbp in parts[1:]:
            dwmat += dwp
            dbias += dbp
        dweight = dwmat.T.reshape(f, kh, kw, c).transpose(0, 3, 1, 2).astype(weight.dtype)
        dbias = dbias.astype(weight.dtype, copy=False)
        return (None if dxc is None else dxc.transpose(1, 0, 2, 3)), dweight, dbias

    # -- pooling ------------------------------------------------------------------------------
    def _tiled_pool(self, kh: int, kw: int, stride: Pair, padding: Pair) -> bool:
        return self.fast_paths and stride == (kh, kw) and padding == (0, 0)

    @staticmethod
    def _planes(x: np.ndarray) -> tuple[np.ndarray, bool]:
        """x (N, C, H, W) as contiguous planes (P, H, W), and whether they are channel-major.

        NumPy iterates a plain 3-D array much faster than a transposed 4-D view, so the pools
        work on planes: channel-major (C, N) order when x is laid out so (the fast conv's
        output), else NCHW order."""
        n, c, h, w = x.shape
        cn = x.transpose(1, 0, 2, 3)
        if cn.flags.c_contiguous and not x.flags.c_contiguous:
            return cn.reshape(c * n, h, w), True
        return np.ascontiguousarray(x).reshape(n * c, h, w), False

    @staticmethod
    def _unplanes(p: np.ndarray, n: int, c: int, channel_major: bool) -> np.ndarray:
        h, w = p.shape[1:]
        if channel_major:
            return p.reshape(c, n, h, w).transpose(1, 0, 2, 3)
        return p.reshape(n, c, h, w)

    def maxpool2d_forward(self, x: Any, kh: int, kw: int, stride: Pair, padding: Pair) -> tuple[Any, Any]:
        if not self._tiled_pool(kh, kw, stride, padding) or x.size == 0:
            return super().maxpool2d_forward(x, kh, kw, stride, padding)
        n, c, h, w = x.shape
        oh, ow = h // kh, w // kw
        planes, cmajor = self._planes(x)
        jit = cpu_jit_ops.maxpool_tiled_forward(planes, kh, kw)  # one fused pass when numba is here
        if jit is not None:
            return self._unplanes(jit[0], n, c, cmajor), self._unplanes(jit[1], n, c, cmajor)
        planes = planes[:, :oh * kh, :ow * kw]
        # Masked copies (copyto/where) are ~10x slower than arithmetic in NumPy, so the winner is
        # tracked arithmetically, columns first, then rows. A strict '>' scan in window order
        # keeps the first maximal offset in row-major order: the first row holding the maximum,
        # then the first column of that row holding it (as the kernel's tie rule). NaN propagates
        # into y here (np.maximum), as in PyTorch; the generic op skips a NaN after the first offset.
        mcol = planes[:, :, 0::kw]  # (P, OH*kh, OW): the maximum over each window row
        jidx = None  # which column of the window row holds it (None: all zero)
        if kw > 1:
            mcol = mcol.copy()
            jidx = np.zeros(mcol.shape, dtype=np.int16)
            for j in range(1, kw):
                cand = planes[:, :, j::kw]
                better = cand > mcol
                np.maximum(mcol, cand, out=mcol)
                jidx += better * (np.int16(j) - jidx)
        y = mcol[:, 0::kh].copy()
        iidx = np.zeros(y.shape, dtype=np.int16)
        jwin = jidx[:, 0::kh].copy() if jidx is not None else None
        for i in range(1, kh):
            cand = mcol[:, i::kh]
            better = cand > y
            np.maximum(y, cand, out=y)
            iidx += better * (np.int16(i) - iidx)
            if jwin is not None:
                jwin += better * (jidx[:, i::kh] - jwin)
        argmax = np.multiply(iidx, np.int32(w), dtype=np.int32)
        argmax += self._pool_origin(oh, ow, kh, kw, w)
        if jwin is not None:
            argmax += jwin
        return self._unplanes(y, n, c, cmajor), self._unplanes(argmax, n, c, cmajor)

    @staticmethod
    def _pool_origin(oh: int, ow: int, kh: int, kw: int, w: int) -> np.ndarray:
        """Flat index of each window's top-left input pixel, (OH, OW) int32."""
        return (np.arange(oh, dtype=np.int32) * np.int32(kh * w))[:, None] + \
            np.arange(ow, dtype=np.int32)[None, :] * np.int32(kw)

    def maxpool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int,
                           stride: Pair, padding: Pair) -> Any:
        if not self._tiled_pool(kh, kw, stride, padding) or dy.size == 0:
            return super().maxpool2d_backward(dy, argmax, x_shape, kh, kw, stride, padding)
        n, c, h, w = x_shape
        oh, ow = dy.shape[2:]
        # dx in the layout of the forward's input, which argmax kept: the layer before (a ReLU,
        # say) then sees dy in the layout of its own output. dy is small (pooled), so it moves.
        amp, cmajor = self._planes(argmax)
        dyp = np.ascontiguousarray(dy.transpose(1, 0, 2, 3) if cmajor else dy).reshape(amp.shape)
        if argmax.dtype == np.int32:
            jit = cpu_jit_ops.maxpool_tiled_backward(dyp, amp, h, w, kh, kw)
            if jit is not None:
                return self._unplanes(jit, n, c, cmajor)
        rel = amp - self._pool_origin(oh, ow, kh, kw, w)  # winner's i*W + j in its window
        ragged = h != oh * kh or w != ow * kw  # rows/columns no window covers get zero gradient
        dx = (np.zeros if ragged else np.empty)((dyp.shape[0], h, w), dtype=dy.dtype)
        hit = np.empty(rel.shape, dtype=bool)
        for i in range(kh):
            for j in range(kw):
                np.equal(rel, np.int32(i * w + j), out=hit)
                np.multiply(dyp, hit, out=dx[:, i:oh * kh:kh, j:ow * kw:kw])
        return self._unplanes(dx, n, c, cmajor)

    # -- batch norm ---------------------------------------------------------------------------
    @staticmethod
    def _channel3(x: np.ndarray) -> tuple[np.ndarray, bool]:
        """x (N, C, H, W) as a (C, N, H*W) view (copying only an unusual layout), and whether
        x is channel-major (the fast conv's output layout)."""
        n, c, h, w = x.shape
        cn = x.transpose(1, 0, 2, 3)
        if cn.flags.c_contiguous:
            return cn.reshape(c, n, h * w), True
        return np.ascontiguousarray(x).reshape(n, c, h * w).transpose(1, 0, 2), False

    @staticmethod
    def _like3(shape: tuple[int, ...], dtype: np.dtype, cmajor: bool) -> tuple[np.ndarray, np.ndarray]:
        """A new (N, C, H, W) array in the given layout, and its (C, N, H*W) view."""
        n, c, h, w = shape
        if cmajor:
            buf = np.empty((c, n, h, w), dtype=dtype)
            return buf.transpose(1, 0, 2, 3), buf.reshape(c, n, h * w)
        buf = np.empty(shape, dtype=dtype)
        return buf, buf.reshape(n, c, h * w).transpose(1, 0, 2)

    def _bn_jit_ok(self, x: Any, *others: Any) -> bool:
        return (self.fast_paths and isinstance(x, np.ndarray) and x.ndim == 4 and x.size > 0
                and x.dtype in (np.float32, np.float64) and all(isinstance(a, np.ndarray) for a in others)
                and cpu_jit.numba_available())

    def batchnorm_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        """Two fused passes (statistics, then normalize) with numba; contract: ops/norm.py."""
        out = self._bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, relu=False)
        return out or super().batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)

    def batchnorm_relu_forward_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                                     running_var: Any | None, momentum: float, eps: float) -> tuple[Any, Any, Any]:
        """As batchnorm_forward_train, with the ReLU in its normalize pass."""
        out = self._bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, relu=True)
        return out or super().batchnorm_relu_forward_train(x, gamma, beta, running_mean, running_var, momentum, eps)

    def _bn_train(self, x: Any, gamma: Any, beta: Any, running_mean: Any | None, running_var: Any | None,
                  momentum: float, eps: float, relu: bool) -> tuple[Any, Any, Any] | None:
        if not (self._bn_jit_ok(x, gamma, beta) and x.shape[1] == gamma.shape[0] == beta.shape[0]):
            return None
        x3, cmajor = self._channel3(x)
        stats = cpu_jit_ops.batchnorm_stats(x3)
        if stats is None:
            return None
        acc = stat_dtype(x.dtype)
        mean, var = stats[0].astype(acc), stats[1].astype(acc)
        invstd = 1.0 / np.sqrt(var + acc.type(eps))
        scale = gamma.astype(acc, copy=False) * invstd
        y, y3 = self._like3(x.shape, x.dtype, cmajor)
        if not cpu_jit_ops.batchnorm_apply(x3, mean, scale, beta.astype(acc), y3, relu=relu):
            return None
        update_running_stats(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
        return y, mean, invstd

    def batchnorm_backward(self, dy: Any, x: Any, gamma: Any, mean: Any, invstd: Any) -> tuple[Any, Any, Any]:
        """One fused pass for the sums, one for dx, with numba; contract: ops/norm.py."""
        return self._bn_backward(dy, None, x, gamma, mean, invstd) or \
            super().batchnorm_backward(dy, x, gamma, mean, invstd)

    def batchnorm_relu_backward(self, dy: Any, y: Any, x: Any, gamma: Any, mean: Any,
                                invstd: Any) -> tuple[Any, Any, Any]:
        """As batchnorm_backward, with the ReLU's mask read in the same passes."""
        return self._bn_backward(dy, y, x, gamma, mean, invstd) or \
            super().batchnorm_relu_backward(dy, y, x, gamma, mean, invstd)

    def _bn_backward(self, dy: Any, y: Any | None, x: Any, gamma: Any, mean: Any,
                     invstd: Any) -> tuple[Any, Any, Any] | None:
        acc = stat_dtype(getattr(x, "dtype", np.float32))
        if not (self._bn_jit_ok(x, dy, gamma, mean, invstd) and dy.shape == x.shape and dy.dtype == x.dtype
                and mean.dtype == invstd.dtype == acc and mean.shape == invstd.shape == (x.shape[1],)):
            return None
        if y is not None and not (isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == x.dtype):
            return None
        x3, cmajor = self._channel3(x)
        dy3, _ = self._channel3(dy)
        y3 = None if y is None else self._channel3(y)[0]
        dx, dx3 = self._like3(x.shape, x.dtype, cmajor)
        k_scale = gamma.astype(acc, copy=False) * invstd
        sums = cpu_jit_ops.batchnorm_backward(dy3, x3, mean, invstd, k_scale, dx3, relu_y3=y3)
        if sums is None:
            return None
        return dx, sums[0].astype(gamma.dtype), sums[1].astype(gamma.dtype)
