"""Activation layers, usable alone or as `activation="name"` on Dense and Conv2D.

Each keeps only what its derivative needs (the output for sigmoid/tanh/softmax, a mask for
ReLU). Forms are chosen to be overflow-free in float32 at |x| = 1e4.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpunn.layers.base import Layer


class Activation(Layer):
    """Base for elementwise activations: any rank, shape-preserving."""

    def __init__(self, name: str | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self._saved: Any = None

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        pass  # shape-free: one activation object may see any shape

    def forward(self, x: Any, training: bool = False) -> Any:
        x = self._prepare(x)
        y, self._saved = self._forward(x)
        return y

    def backward(self, dy: Any) -> Any:
        return self._backward(dy, self._need_cache("_saved"))

    def _forward(self, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _backward(self, dy: Any, saved: Any) -> Any:
        raise NotImplementedError


class Linear(Activation):
    """The identity: linear output for regression."""

    def _forward(self, x):
        return x, True

    def _backward(self, dy, saved):
        return dy


class ReLU(Activation):
    def _forward(self, x):
        mask = x > 0
        return x * mask, mask

    def _backward(self, dy, mask):
        return dy * mask


class Sigmoid(Activation):
    def _forward(self, x):
        xp = self.backend.xp
        # 1/(1+exp(-x)) overflows for x << 0; use exp(-|x|) which is always in (0, 1].
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        return y, y

    def _backward(self, dy, y):
        return dy * y * (1 - y)


class Tanh(Activation):
    def _forward(self, x):
        y = self.backend.xp.tanh(x)
        return y, y

    def _backward(self, dy, y):
        return dy * (1 - y * y)


class Softmax(Activation):
    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        self.axis = axis

    def _forward(self, x):
        xp = self.backend.xp
        z = x - x.max(axis=self.axis, keepdims=True)
        e = xp.exp(z)
        y = e / e.sum(axis=self.axis, keepdims=True)
        return y, y

    def _backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))


_REGISTRY: dict[str, Callable[[], Activation]] = {
    "linear": Linear, "identity": Linear, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
}


def register_activation(name: str, factory: Callable[[], Activation]) -> None:
    _REGISTRY[name.lower()] = factory


def get_activation(spec: str | Layer | None) -> Layer | None:
    """An activation layer from a name, a layer instance, or None (no activation)."""
    if spec is None:
        return None
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]()
    raise ValueError(f"get_activation: argument 'activation' must be None, a Layer, or one of "
                     f"{sorted(_REGISTRY)}, got {spec!r}")
