"""Flatten: (N, ...) -> (N, prod(...))."""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.layers.base import Layer


class Flatten(Layer):
    def __init__(self, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self._shape: Any = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Any) -> Any:
        return dy.reshape(self._need_cache("_shape"))
