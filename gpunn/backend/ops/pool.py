"""Max- and average-pooling over NCHW, looping only over the kh*kw window offsets.

Max-pool's argmax is int32, the flat index h*W + w of the winner inside its (n, c) input
plane, the same contract the CUDA kernel follows. Ties go to the first offset in row-major
window order. Padding is -inf for max and zeros (counted) for average, as PyTorch does by
default.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.ops.geometry import conv_output_size, window_slice

Pair = tuple[int, int]


class PoolOps:
    xp: Any

    def _pad_plane(self, x: Any, padding: Pair, fill: float) -> Any:
        ph, pw = padding
        if not (ph or pw):
            return x
        n, c, h, w = x.shape
        out = self.xp.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=x.dtype)
        out[:, :, ph:ph + h, pw:pw + w] = x
        return out

    def _window_origin(self, h: int, w: int, oh: int, ow: int, stride: Pair, padding: Pair) -> Any:
        """Flat input index of each window's top-left corner, (OH, OW) int32 (may be negative in padding)."""
        xp = self.xp
        rows = xp.arange(oh, dtype=np.int32) * stride[0] - padding[0]
        cols = xp.arange(ow, dtype=np.int32) * stride[1] - padding[1]
        return rows[:, None] * np.int32(w) + cols[None, :]

    def maxpool2d_forward(self, x: Any, kh: int, kw: int, stride: Pair, padding: Pair) -> tuple[Any, Any]:
        xp = self.xp
        n, c, h, w = x.shape
        oh = conv_output_size(h, kh, stride[0], padding[0])
        ow = conv_output_size(w, kw, stride[1], padding[1])
        xpad = self._pad_plane(x, padding, -np.inf)
        origin = self._window_origin(h, w, oh, ow, stride, padding)
        y = xpad[:, :, window_slice(0, stride[0], oh), window_slice(0, stride[1], ow)].copy()
        argmax = xp.broadcast_to(origin, y.shape).copy()
        for i in range(kh):
            rows = window_slice(i, stride[0], oh)
            for j in range(kw):
                if i == 0 and j == 0:
                    continue
                candidate = xpad[:, :, rows, window_slice(j, stride[1], ow)]
                better = candidate > y
                xp.copyto(y, candidate, where=better)
                xp.copyto(argmax, origin + np.int32(i * w + j), where=better)
        return y, argmax

    def maxpool2d_backward(self, dy: Any, argmax: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int,
                           stride: Pair, padding: Pair) -> Any:
        xp = self.xp
        n, c, h, w = x_shape
        ph, pw = padding
        oh, ow = dy.shape[2:]
        origin = self._window_origin(h, w, oh, ow, stride, padding)
        dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        for i in range(kh):
            rows = window_slice(i, stride[0], oh)
            for j in range(kw):
                hit = argmax == (origin + np.int32(i * w + j))
                dxpad[:, :, rows, window_slice(j, stride[1], ow)] += dy * hit
        return dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad

    def avgpool2d_forward(self, x: Any, kh: int, kw: int, stride: Pair, padding: Pair) -> Any:
        n, c, h, w = x.shape
        oh = conv_output_size(h, kh, stride[0], padding[0])
        ow = conv_output_size(w, kw, stride[1], padding[1])
        xpad = self._pad_plane(x, padding, 0.0)
        y = self.xp.zeros((n, c, oh, ow), dtype=x.dtype)
        for i in range(kh):
            rows = window_slice(i, stride[0], oh)
            for j in range(kw):
                y += xpad[:, :, rows, window_slice(j, stride[1], ow)]
        y *= x.dtype.type(1.0 / (kh * kw))
        return y

    def avgpool2d_backward(self, dy: Any, x_shape: tuple[int, int, int, int], kh: int, kw: int,
                           stride: Pair, padding: Pair) -> Any:
        n, c, h, w = x_shape
        ph, pw = padding
        oh, ow = dy.shape[2:]
        share = dy * dy.dtype.type(1.0 / (kh * kw))
        dxpad = self.xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        for i in range(kh):
            rows = window_slice(i, stride[0], oh)
            for j in range(kw):
                dxpad[:, :, rows, window_slice(j, stride[1], ow)] += share
        return dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad
