"""MaxPool2D and AvgPool2D over NCHW (or NHWC with data_format="channels_last"); overlapping
windows (e.g. 3 at stride 2) are supported. GlobalAveragePooling2D: the mean over H and W.

The backend's pool ops read NCHW; a channels_last pool hands them transposed views (see
gpunn/layers/data_format.py)."""
from __future__ import annotations

from typing import Any

from gpunn._checks import pair
from gpunn.backend.ops.geometry import conv_output_size
from gpunn.layers.base import Layer
from gpunn.layers.data_format import (CHANNELS_LAST, channels_first_shape, channels_last_shape, layout_hint, layout_of,
                                      resolve_data_format, to_channels_first, to_channels_last)


class _ImageLayer(Layer):
    """What the pools share: a data_format, the NCHW views, and the layout hint in shape errors."""

    input_ndim = 4
    input_layout = "(N, C, H, W)"

    def __init__(self, data_format: str | None, input_shape: tuple[int, ...] | None, name: str | None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.data_format = resolve_data_format(data_format, type(self).__name__)
        self.input_layout = layout_of(self.data_format)

    @property
    def _last(self) -> bool:
        return self.data_format == CHANNELS_LAST

    def _first(self, a: Any) -> Any:
        """`a` in this layer's layout as an NCHW view, for the backend ops."""
        return to_channels_first(a) if self._last else a

    def _back(self, a: Any) -> Any:
        """An NCHW result of the backend ops as a view in this layer's layout."""
        return to_channels_last(a) if self._last else a

    def _check_declared_shape(self, x: Any, label: str) -> None:
        try:
            super()._check_declared_shape(x, label)
        except ValueError as exc:
            raise ValueError(f"{exc}{layout_hint(tuple(x.shape[1:]), self.data_format)}") from None


class _Pool2D(_ImageLayer):
    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, input_shape: tuple[int, ...] | None = None,
                 name: str | None = None, data_format: str | None = None) -> None:
        super().__init__(data_format, input_shape, name)
        where = type(self).__name__
        self.pool_size = pair(pool_size, "pool_size", where, minimum=1)
        self.strides = pair(strides, "strides", where, minimum=1) if strides is not None else self.pool_size
        self.padding = pair(padding, "padding", where, minimum=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(f"{where}: argument 'padding' must be at most half of pool_size {self.pool_size}, "
                             f"got {self.padding}")
        self._cache: Any = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = channels_first_shape(input_shape, self.data_format)
        oh = conv_output_size(h, self.pool_size[0], self.strides[0], self.padding[0])
        ow = conv_output_size(w, self.pool_size[1], self.strides[1], self.padding[1])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: input of spatial size {(h, w)} is smaller than the pool window "
                             f"{self.pool_size}{layout_hint(tuple(input_shape), self.data_format)}")
        return channels_last_shape((c, oh, ow), self.data_format)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        self.compute_output_shape(shape)  # pooling has no parameters: any C, H, W that fits the window


class MaxPool2D(_Pool2D):
    """The maximum over each `pool_size` window (stride `strides`, default the window)."""

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._first(self._prepare(x))
        y, argmax = self.backend.maxpool2d_forward(x, *self.pool_size, self.strides, self.padding)
        self._cache = (x.shape, argmax)
        return self._back(y)

    def backward(self, dy: Any) -> Any:
        x_shape, argmax = self._need_cache("_cache")
        dx = self.backend.maxpool2d_backward(self._first(dy), argmax, x_shape, *self.pool_size, self.strides,
                                             self.padding)
        return self._back(dx)


class AvgPool2D(_Pool2D):
    """The mean over each `pool_size` window (stride `strides`, default the window)."""

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._first(self._prepare(x))
        self._cache = x.shape
        return self._back(self.backend.avgpool2d_forward(x, *self.pool_size, self.strides, self.padding))

    def backward(self, dy: Any) -> Any:
        x_shape = self._need_cache("_cache")
        return self._back(self.backend.avgpool2d_backward(self._first(dy), x_shape, *self.pool_size, self.strides,
                                                          self.padding))


class GlobalAveragePooling2D(_ImageLayer):
    """The mean of each channel over H and W: (N, C, H, W) -> (N, C), or (N, H, W, C) -> (N, C) with
    data_format="channels_last"; `keepdims=True` keeps H and W as axes of size 1, as in Keras."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False,
                 input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        super().__init__(data_format, input_shape, name)
        self.keepdims = bool(keepdims)
        self._cache: Any = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c = channels_first_shape(input_shape, self.data_format)[0]
        return channels_last_shape((c, 1, 1), self.data_format) if self.keepdims else (c,)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        pass  # no parameters: any C, H, W

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._first(self._prepare(x))
        self._cache = x.shape
        y = x.mean(axis=(2, 3), keepdims=True)  # xp's pairwise sums, in x's dtype
        return self._back(y) if self.keepdims else y.reshape(y.shape[:2])

    def backward(self, dy: Any) -> Any:
        n, c, h, w = self._need_cache("_cache")
        xp = self.backend.xp
        dx = xp.empty((n, c, h, w), dtype=dy.dtype)
        dx[...] = self._first(dy).reshape(n, c, 1, 1) * dy.dtype.type(1.0 / (h * w))
        return self._back(dx)
