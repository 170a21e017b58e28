"""Inverted dropout: scale the kept units by 1/(1-rate) in training; the identity at inference."""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.layers.base import Layer


class Dropout(Layer):
    def __init__(self, rate: float, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.rate = real_arg(rate, "rate", "Dropout", 0, 1, hi_open=True, want="a float in [0, 1)", numpy=False)
        self._mask: Any = None

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        pass  # no parameters: any shape

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        if not training or self.rate == 0.0:
            self._mask = 1
            return x
        keep = self.backend.rng.random(x.shape, dtype=x.dtype) >= self.rate
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, dy: Any) -> Any:
        return dy * self._need_cache("_mask")
