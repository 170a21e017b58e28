"""MaxPool2D and AvgPool2D over NCHW; overlapping windows (e.g. 3 at stride 2) are supported."""
from __future__ import annotations

from typing import Any

from gpunn._checks import pair
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.layers.base import Layer


class _Pool2D(Layer):
    input_ndim = 4
    input_layout = "(N, C, H, W)"

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, input_shape: tuple[int, ...] | None = None,
                 name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        where = type(self).__name__
        self.pool_size = pair(pool_size, "pool_size", where, minimum=1)
        self.strides = pair(strides, "strides", where, minimum=1) if strides is not None else self.pool_size
        self.padding = pair(padding, "padding", where, minimum=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(f"{where}: argument 'padding' must be at most half of pool_size {self.pool_size}, "
                             f"got {self.padding}")
        self._cache: Any = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        oh = conv_output_size(h, self.pool_size[0], self.strides[0], self.padding[0])
        ow = conv_output_size(w, self.pool_size[1], self.strides[1], self.padding[1])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: input of spatial size {(h, w)} is smaller than the pool window "
                             f"{self.pool_size}")
        return c, oh, ow

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        self.compute_output_shape(shape)  # pooling has no parameters: any C, H, W that fits the window


class MaxPool2D(_Pool2D):
    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        y, argmax = self.backend.maxpool2d_forward(x, *self.pool_size, self.strides, self.padding)
        self._cache = (x.shape, argmax)
        return y

    def backward(self, dy: Any) -> Any:
        x_shape, argmax = self._need_cache("_cache")
        return self.backend.maxpool2d_backward(dy, argmax, x_shape, *self.pool_size, self.strides, self.padding)


class AvgPool2D(_Pool2D):
    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        self._cache = x.shape
        return self.backend.avgpool2d_forward(x, *self.pool_size, self.strides, self.padding)

    def backward(self, dy: Any) -> Any:
        x_shape = self._need_cache("_cache")
        return self.backend.avgpool2d_backward(dy, x_shape, *self.pool_size, self.strides, self.padding)
