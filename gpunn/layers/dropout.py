"""Inverted dropout: scale the kept units by 1/(1-rate) in training; the identity at inference.

The arithmetic and the draw are the backend's (`dropout_forward` / `dropout_backward`, see
gpunn/backend/ops/dropout.py): NumPy draws from its generator, the CUDA backends from a Philox
stream whose state lives in device memory."""
from __future__ import annotations

from typing import Any

from gpunn._checks import real_arg
from gpunn.layers.base import Layer


class Dropout(Layer):
    def __init__(self, rate: float, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.rate = real_arg(rate, "rate", "Dropout", 0, 1, hi_open=True, want="a float in [0, 1)", numpy=False)
        self._mask: Any = None
        self._mask_rate = self.rate

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        pass  # no parameters: any shape

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        if not training or self.rate == 0.0:
            self._mask = 1
            return x
        y, self._mask = self.backend.dropout_forward(x, self.rate)
        self._mask_rate = self.rate  # the rate the mask was drawn at, should `rate` change before backward
        return y

    def backward(self, dy: Any) -> Any:
        mask = self._need_cache("_mask")
        if isinstance(mask, int):  # inference, or rate 0: the identity
            return dy * mask
        return self.backend.dropout_backward(dy, mask, self._mask_rate)
