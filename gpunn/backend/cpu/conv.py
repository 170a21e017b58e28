"""The NumPy backend's convolution at stride 1: the "frame" layout, GEMMs on window columns, and
numba direct kernels for small weights; split over gpunn's CPU threads by groups of samples.

The input is padded once into a channel-major buffer X of shape (C, N*Hp*Wp): every sample's
padded frame laid end to end, kept for the backward pass. Work goes by groups of samples (about
one cache-sized chunk of columns each; each thread takes a contiguous range of groups), so a
group's padding, columns, products and epilogue stay in its core's cache:

- **Forward.** im2col columns at the valid output positions only (`_window_cols`, a numba copy),
  then W(F, kh*kw*C) @ cols straight into the channel-major output, then bias and a fused ReLU.
  For small weights (DIRECT_MAX_WEIGHTS) the numba kernel computes the products on the frame
  grid without columns: for kernel offset (i, j) the input under frame position p is
  X[:, p + i*dh*Wp + j*dw], a contiguous slice. Small columns are kept for dW (_KEEP_COLS_BYTES).
- **dW** = cols @ dy^T per group (that orientation runs faster in OpenBLAS), summed over groups
  and threads; or the numba kernel on the zero-framed dy for small weights.
- **dX**: W^T dy at the valid positions, scattered back into zeroed frames by the numba col2im;
  with C < F and small weights, the numba correlation of the zero-framed dy with the flipped
  kernel instead.
- **Fused ReLU.** `relu=True` applies it to each group in cache, and `relu_y` masks dy per group.

Outputs are NCHW views of channel-major (C, N, H, W) memory, so the next layer's copies read
long rows. Results agree with the generic ops to rounding (tests/backend/cpu/test_backend.py,
tests/backend/cpu/test_jit.py and tests/backend/cpu/test_threads.py pin that down in float64).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.cpu import jit as cpu_jit
from gpunn.backend.cpu import threads as cpu_threads
from gpunn.backend.ops.conv import check_conv_grad, check_relu_y
from gpunn.backend.ops.geometry import conv_output_size

Pair = tuple[int, int]

# Columns per chunk: about this many bytes of cols per GEMM. Bigger GEMMs amortize OpenBLAS's
# packing of the weights; measured at batch 128, 2 threads (fwd/bwd ms, CIFAR 32->32 conv at 32x32):
# 1 MiB 45.7/77.3, 2 MiB 37.0/72.9, 4 MiB 33.7/55.2, 8 MiB 30.8/67.6.
_CHUNK_BYTES = 4 << 20
# The forward keeps its window columns for dW up to this size (LeNet-5's second conv: 7.7 MB).
_KEEP_COLS_BYTES = 16 << 20
# Frame positions per group of samples when the numba direct kernels run (no columns to fit in cache).
_DIRECT_GROUP = 1 << 15
# With numba installed, small convolutions run direct kernels (cpu_jit.frame_corr/frame_dw)
# instead of building columns for a starved GEMM. Measured at batch 128, 2 threads, best of 40
# (GEMM on window columns -> direct): LeNet-5's first conv (150 weights) forward 1.4 -> 0.9 ms,
# dW 2.9 -> 1.3 ms; its second (2400 weights) forward 1.1 -> 1.4 ms, backward 2.6 -> 2.8 ms with
# dW direct and 2.6 -> 2.9 ms with dX direct (against W^T dy scattered back by the numba
# col2im); the CIFAR CNN's first (864) dW 12 -> 7 ms, forward even. Hence one limit per product.
DIRECT_MAX_WEIGHTS = 512  # forward
DIRECT_DW_MAX_WEIGHTS = 1024
DIRECT_DX_MAX_WEIGHTS = 1024  # and only when C < F


class _FrameCache:
    """What the fast conv forward keeps for its backward: the padded channel-major input."""

    __slots__ = ("xbuf", "x_shape", "frame", "kernel", "padding", "dilation", "cols")

    def __init__(self, xbuf: np.ndarray, x_shape: tuple[int, ...], frame: Pair, kernel: Pair, padding: Pair,
                 dilation: Pair, cols: np.ndarray | None = None) -> None:
        self.xbuf, self.x_shape, self.frame = xbuf, x_shape, frame
        self.kernel, self.padding, self.dilation = kernel, padding, dilation
        #: the forward's window columns (kh*kw*C, N*OH*OW), when small enough to keep for dW
        self.cols = cols


class FrameConvOps:
    """The stride-1 convolution overrides; mixed into NumpyBackend (uses its per-thread _buffer)."""

    def _frame_ok(self, x: Any, weight: Any, stride: Pair) -> bool:
        # float16 / bfloat16 take the generic op (float32 products and bias sums, one rounding)
        return (self.fast_paths and stride == (1, 1) and x.dtype.kind == "f" and weight.dtype.kind == "f"
                and x.shape[0] > 0 and x.dtype.itemsize > 2 and weight.dtype.itemsize > 2)

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
        if direct and cpu_jit.frame_corr(src, base, np.array(offsets), w, count, out, frame, span):
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
        if cpu_jit.im2col_window(xbuf, s0, kernel, dilation, out_hw, cols):
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
            return super().conv2d_forward(x, weight, bias, stride, padding, dilation, relu)  # type: ignore[misc]
        n, c, h, w = x.shape
        f, _, kh, kw = weight.shape
        (ph, pw), (dh, dw) = padding, dilation
        oh, ow = conv_output_size(h, kh, 1, ph, dh), conv_output_size(w, kw, 1, pw, dw)
        hp, wp = h + 2 * ph, w + 2 * pw
        frame_len = hp * wp
        dtype = np.result_type(x.dtype, weight.dtype)
        # X: (C, N*Hp*Wp), every padded frame end to end; kept for the backward pass.
        xt = x.transpose(1, 0, 2, 3)
        # Unpadded channel-major input (a conv or pool output) is already the frame buffer.
        in_place = not (ph or pw) and xt.flags.c_contiguous and x.dtype == dtype
        xbuf = xt if in_place else (np.zeros if (ph or pw) else np.empty)((c, n, hp, wp), dtype=dtype)
        xflat = xbuf.reshape(c, n * frame_len)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        lead = offsets[-1]  # every frame's last `lead` positions are outside its OHxOW corner
        span = (oh - 1) * wp + ow  # a frame's positions up to its last output: the direct kernel's share
        wmat = np.ascontiguousarray(weight.transpose(0, 2, 3, 1), dtype=dtype).reshape(f, -1)
        direct = self._direct(weight)
        yc = np.empty((f, n, oh, ow), dtype=dtype)  # channel-major, returned as an NCHW view
        # Samples per group: the direct kernel works on whole frames; the GEMM on window columns.
        group = self._frame_group(0, frame_len, n, dtype) if direct else \
            self._frame_group(c * kh * kw, oh * ow, n, dtype)
        y2 = yc.reshape(f, n * oh * ow)
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
                if not in_place:
                    xbuf[:, s0:s1, ph:ph + h, pw:pw + w] = xt[:, s0:s1]
                yb = yc[:, s0:s1]  # this group's output (F, m, OH, OW)
                if not direct:
                    keep_to = None if cols_all is None else cols_all[:, s0 * oh * ow:s1 * oh * ow]
                    cols = self._window_cols(xbuf, s0, s1, (kh, kw), (dh, dw), (oh, ow), group, keep_to)
                    yg = y2[:, s0 * oh * ow:s1 * oh * ow]
                    np.matmul(wmat, cols, out=yg)
                    if bias is not None:
                        yg += bias.reshape(f, 1)
                else:
                    yg = self._flat_scratch("yframe", f, m * frame_len, f * group * frame_len, dtype)
                    self._frame_product(xflat, s0 * frame_len, offsets, wmat, m * frame_len - lead, yg, direct,
                                        frame_len, span)
                    valid = yg.reshape(f, m, hp, wp)[:, :, :oh, :ow]
                    if bias is not None:
                        np.add(valid, bias.reshape(f, 1, 1, 1), out=yb)
                    else:
                        yb[...] = valid
                if relu:  # while the group is in cache; NaN propagates, as relu_forward
                    np.maximum(yb, dtype.type(0), out=yb)

        cpu_threads.parallel_for(samples, n, work=x.size + f * n * oh * ow)
        cache = _FrameCache(xbuf, x.shape, (hp, wp), (kh, kw), padding, dilation, cols_all)
        return yc.transpose(1, 0, 2, 3), cache

    def conv2d_backward(self, dy: Any, x_shape: tuple[int, int, int, int], weight: Any, cols: Any,
                        stride: Pair, padding: Pair, dilation: Pair,
                        need_dx: bool = True, relu_y: Any | None = None) -> tuple[Any | None, Any, Any]:
        if not isinstance(cols, _FrameCache):
            return super().conv2d_backward(dy, x_shape, weight, cols, stride, padding, dilation, need_dx, relu_y)
        cache = cols
        n, c, h, w = x_shape
        f, _, kh, kw = weight.shape
        hp, wp = cache.frame
        ph, pw = cache.padding
        dh, dw = cache.dilation
        oh, ow = hp - (kh - 1) * dh, wp - (kw - 1) * dw
        frame_len = hp * wp
        dtype = cache.xbuf.dtype
        check_conv_grad(dy, x_shape, weight, (1, 1), cache.padding, cache.dilation)
        if relu_y is not None:
            check_relu_y(dy, relu_y)
        xflat = cache.xbuf.reshape(c, n * frame_len)
        offsets = [i * dh * wp + j * dw for i in range(kh) for j in range(kw)]
        lead = offsets[-1]
        span = (oh - 1) * wp + ow  # dy is zero past a frame's first `span` positions
        dyc = dy.transpose(1, 0, 2, 3)  # (F, N, OH, OW), a view
        direct_dw = self._direct(weight, "dw")
        offs = np.array(offsets)
        # dX, per group of samples (so groups and threads are independent): W^T dy at the valid
        # positions, scattered back by col2im (measured 0-12% faster on the CIFAR CNN's convs than
        # the correlation of the zero-framed dy with the flipped kernel, a GEMM on frame
        # columns); or, with C < F and small weights, that correlation by the numba kernel.
        direct_dx = need_dx and c < f and self._direct(weight, "dx")
        wmat_t = np.ascontiguousarray(weight.transpose(1, 2, 3, 0), dtype=dtype).reshape(c, -1) if direct_dx \
            else None
        wmat_s = np.ascontiguousarray(weight.transpose(2, 3, 1, 0), dtype=dtype).reshape(-1, f)
        dxc = np.empty((c, n, h, w), dtype=dtype) if need_dx else None
        gemm_rows = 0 if direct_dw and (direct_dx or not need_dx) else c * kh * kw
        group = self._frame_group(gemm_rows, frame_len, n, dtype)
        need_frame = direct_dw or direct_dx  # dy on the frame grid, for the direct kernels
        dy2 = dyc.reshape(f, n * oh * ow) if dyc.flags.c_contiguous else None
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
                if dy2 is not None and ym is None:
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
                if direct_dw and cpu_jit.frame_dw(dyg, lead, xflat, s0 * frame_len, offs, count, part,
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
                if not direct_dx:
                    # dcols = W^T dy at the valid positions, each offset's block added into the
                    # zeroed frames at its shift (col2im)
                    dcols = self._flat_scratch("dcols", kh * kw * c, m * oh * ow, kh * kw * c * group * oh * ow, dtype)
                    np.matmul(wmat_s, dyw, out=dcols)
                    dxv = dxg.reshape(c, m, hp, wp)
                    if not cpu_jit.col2im_window(dcols, (kh, kw), (dh, dw), (oh, ow), dxv):
                        dcv = dcols.reshape(kh * kw, c, m, oh, ow)
                        dxv[...] = 0
                        for i in range(kh):
                            for j in range(kw):
                                dxv[:, :, i * dh:i * dh + oh, j * dw:j * dw + ow] += dcv[i * kw + j]
                else:
                    self._frame_product(dyg, lead, [-o for o in offsets], wmat_t, m * frame_len, dxg, direct_dx)
                dxc[:, s0:s1] = dxg.reshape(c, m, hp, wp)[:, :, ph:ph + h, pw:pw + w]
            return dwacc, dbacc

        parts = cpu_threads.parallel_for(samples, n, work=f * n * oh * ow + n * c * h * w)
        dwmat, dbias = parts[0]
        for dwp, dbp in parts[1:]:
            dwmat += dwp
            dbias += dbp
        dweight = dwmat.T.reshape(f, kh, kw, c).transpose(0, 3, 1, 2).astype(weight.dtype)
        dbias = dbias.astype(weight.dtype, copy=False)
        return (None if dxc is None else dxc.transpose(1, 0, 2, 3)), dweight, dbias
