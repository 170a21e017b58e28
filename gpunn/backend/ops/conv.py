"""im2col / col2im and convolution built on them with one GEMM per sample.

Layout: `cols` is (N, C*kh*kw, OH*OW), Caffe's per-image layout, so the forward product
W(F, C*kh*kw) @ cols gives (N, F, OH*OW), which is already NCHW: no transpose. The only
Python loop is over the kh*kw kernel offsets; each iteration moves a whole strided slab.

float16 / bfloat16 (mixed precision): the products go through DenseOps._matmul_f32 (float32
compute), the bias is added in float32 and the output rounded once; dweight, dbias (a float32 sum)
and dcols are float32 results rounded once to the half dtype; col2im sums in float32 and rounds once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.ops.cast import is_half
from gpunn.backend.ops.dense import round_to
from gpunn.backend.ops.geometry import conv_output_size, window_slice

Pair = tuple[int, int]


def check_conv_grad(dy: Any, x_shape: tuple[int, int, int, int], weight: Any, stride: Pair, padding: Pair,
                    dilation: Pair) -> None:
    """conv2d_backward's dy must have the forward output's shape."""
    n, _, h, w = x_shape
    f, _, kh, kw = weight.shape
    want = (n, f, conv_output_size(h, kh, stride[0], padding[0], dilation[0]),
            conv_output_size(w, kw, stride[1], padding[1], dilation[1]))
    if tuple(getattr(dy, "shape", ())) != want:
        raise ValueError(f"conv2d_backward: argument 'dy' must have the forward output's shape {want}, "
                         f"got {getattr(dy, 'shape', None)}")


def check_relu_y(dy: Any, relu_y: Any) -> None:
    """conv2d_backward's relu_y must be the forward's output: dy's shape and dtype."""
    if getattr(relu_y, "shape", None) != getattr(dy, "shape", None) or relu_y.dtype != dy.dtype:
        raise ValueError(f"conv2d_backward: argument 'relu_y' must be the forward's output, with the shape and "
                         f"dtype of 'dy' {tuple(dy.shape)} {dy.dtype}, got {getattr(relu_y, 'shape', None)} "
                         f"{getattr(relu_y, 'dtype', None)}")


class ConvOps:
    xp: Any

    def im2col(self, x: Any, kh: int, kw: int, stride: Pair, padding: Pair, dilation: Pair) -> Any:
        xp = self.xp
        n, c, h, w = x.shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        oh = conv_output_size(h, kh, sh, ph, dh)
        ow = conv_output_size(w, kw, sw, pw, dw)
        if ph or pw:
            xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
            xpad[:, :, ph:ph + h, pw:pw + w] = x
        else:
            xpad = x
        cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
        for i in range(kh):
            rows = window_slice(i * dh, sh, oh)
            for j in range(kw):
                cols[:, :, i, j] = xpad[:, :, rows, window_slice(j * dw, sw, ow)]
        return cols.reshape(n, c * kh * kw, oh * ow)

    def col2im(self, cols: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: Pair,
               padding: Pair, dilation: Pair) -> Any:
        xp = self.xp
        n, c, h, w = x_shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        oh = conv_output_size(h, kh, sh, ph, dh)
        ow = conv_output_size(w, kw, sw, pw, dw)
        cols6 = cols.reshape(n, c, kh, kw, oh, ow)
        half = is_half(cols)  # sum in float32, round once (as the 16-bit kernels do)
        xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.float32 if half else cols.dtype)
        for i in range(kh):
            rows = window_slice(i * dh, sh, oh)
            for j in range(kw):
                xpad[:, :, rows, window_slice(j * dw, sw, ow)] += cols6[:, :, i, j]
        if ph or pw:
            xpad = xpad[:, :, ph:ph + h, pw:pw + w]
        return round_to(xpad, cols.dtype) if half else xpad

    def conv2d_forward(self, x: Any, weight: Any, bias: Any | None, stride: Pair, padding: Pair,
                       dilation: Pair, relu: bool = False) -> tuple[Any, Any]:
        """Returns (y, cols); keep cols for the backward pass. relu=True returns max(y, 0) (fused
        into the output pass where a backend can; pass y back to conv2d_backward as relu_y)."""
        n, c, h, w = x.shape
        f, _, kh, kw = weight.shape
        oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
        if kh == kw == 1 and stride == (1, 1) and padding == (0, 0):
            cols = x.reshape(n, c, h * w)  # a 1x1 conv needs no unfolding
        else:
            cols = self.im2col(x, kh, kw, stride, padding, dilation)
        if is_half(x) or is_half(weight):  # float32 product and bias add, one rounding
            y = self._matmul_f32(weight.reshape(f, -1), cols)  # type: ignore[attr-defined]
            if bias is not None:
                with np.errstate(over="ignore", invalid="ignore"):  # inf in fp16 training: the scaler's to catch
                    y += bias.reshape(1, f, 1).astype(np.float32)
            if x.dtype == weight.dtype:
                y = round_to(y, x.dtype)
        else:
            y = self.xp.matmul(weight.reshape(f, -1), cols)
            if bias is not None:
                y += bias.reshape(1, f, 1)
        y = y.reshape(n, f, oh, ow)
        return (self.relu_forward(y) if relu else y), cols

    def conv2d_backward(self, dy: Any, x_shape: tuple[int, int, int, int], weight: Any, cols: Any,
                        stride: Pair, padding: Pair, dilation: Pair,
                        need_dx: bool = True, relu_y: Any | None = None) -> tuple[Any | None, Any, Any]:
        """Returns (dx, dweight, dbias); dx is None when need_dx is False (a first layer). With
        relu_y (the output of conv2d_forward(..., relu=True)) dy is first masked by relu_y > 0."""
        xp = self.xp
        check_conv_grad(dy, x_shape, weight, stride, padding, dilation)
        if relu_y is not None:
            check_relu_y(dy, relu_y)
            dy = self.relu_backward(dy, relu_y)
        n, f = dy.shape[:2]
        _, c, kh, kw = weight.shape
        dy2 = dy.reshape(n, f, -1)
        half = is_half(dy)
        if half:  # float32 products and sums, each result rounded once to dy's dtype
            dt = dy.dtype
            f32 = np.float32
            dweight = round_to(xp.tensordot(dy2.astype(f32), cols.astype(f32), axes=([0, 2], [0, 2])), dt)
            dweight = dweight.reshape(weight.shape)
            dbias = round_to(dy2.sum(axis=(0, 2), dtype=f32), dt)
        else:
            dweight = xp.tensordot(dy2, cols, axes=([0, 2], [0, 2])).reshape(weight.shape)
            dbias = dy2.sum(axis=(0, 2))
        if not need_dx:
            return None, dweight, dbias
        if half:
            dcols = round_to(self._matmul_f32(weight.reshape(f, -1).T, dy2), dy.dtype)  # type: ignore[attr-defined]
        else:
            dcols = xp.matmul(weight.reshape(f, -1).T, dy2)
        if kh == kw == 1 and stride == (1, 1) and padding == (0, 0):
            return dcols.reshape(x_shape), dweight, dbias
        return self.col2im(dcols, x_shape, kh, kw, stride, padding, dilation), dweight, dbias
