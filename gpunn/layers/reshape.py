"""Flatten: (N, ...) -> (N, prod(...))."""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import data_format_arg
from gpunn.layers.base import Layer
from gpunn.layers.data_format import CHANNELS_FIRST, to_channels_first, to_channels_last


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), in the input's own axis order: (C, H, W) order for an
    NCHW input, (H, W, C) order for an NHWC one (what Keras's Flatten gives), so a Dense after a
    channels_last network lines up with weights ported from Keras.

    `data_format` has Keras's meaning, and matters only where it is given: "channels_first" says
    the input is (N, C, ...) and flattens it in channels-last order, (H, W, C), as Keras's
    Flatten(data_format="channels_first") does, so that a model ported from Keras's channels_last
    layout to the (faster) channels_first one keeps the Dense weights after the Flatten as they
    are. "channels_last", or None (the default, which ignores gpunn.layers.image_data_format()),
    flattens in the input's own order."""

    def __init__(self, input_shape: tuple[int, ...] | None = None, name: str | None = None,
                 data_format: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.data_format = None if data_format is None else data_format_arg(data_format, "data_format", "Flatten")
        self._shape: Any = None

    @property
    def _reorders(self) -> bool:
        return self.data_format == CHANNELS_FIRST

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        if self._reorders and x.ndim > 2:
            x = to_channels_last(x)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Any) -> Any:
        dx = dy.reshape(self._need_cache("_shape"))
        return to_channels_first(dx) if self._reorders and dx.ndim > 2 else dx
