"""Maxout (Goodfellow et al. 2013): each unit is the max of `pieces` affine maps of the input."""
from __future__ import annotations

from typing import Any

from gpunn._checks import positive_int
from gpunn.layers.base import Layer
from gpunn.layers.kernel_options import FeaturesInput


class Maxout(FeaturesInput, Layer):
    """y[..., u] = max_k (x @ W[:, u, k] + b[u, k]) on the last axis, like Dense with k pieces per unit.

    The weight is stored as (features, units * pieces) so the forward pass is one GEMM; fans for
    the initializer are (features, units), those of one piece. Backward routes each unit's
    gradient to its winning piece only.
    """

    def __init__(self, units: int, pieces: int = 2, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", input_shape: tuple[int, ...] | None = None,
                 name: str | None = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.units = positive_int(units, "units", "Maxout")
        self.pieces = positive_int(pieces, "pieces", "Maxout")
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._cache: Any = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}.build: argument 'x' must be (N, ..., features), got per-sample shape "
                             f"{tuple(input_shape)}")
        super().build(input_shape)
        fans = (input_shape[-1], self.units)
        self.add_param("weight", (input_shape[-1], self.units * self.pieces), self.kernel_initializer, fans=fans)
        self.add_param("bias", (self.units * self.pieces,), self.bias_initializer, fans=fans)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], self.units)

    def forward(self, x: Any, training: bool = False) -> Any:
        self.check_rank(x)
        x = self._prepare(x)
        x2 = x.reshape(-1, x.shape[-1])
        z = (self.backend.matmul(x2, self.params["weight"].data) + self.params["bias"].data).reshape(
            -1, self.units, self.pieces)
        idx = z.argmax(axis=2)
        self._cache = (x, idx)
        y = self.backend.xp.take_along_axis(z, idx[..., None], axis=2)[..., 0]
        return y.reshape(*x.shape[:-1], self.units)

    def backward(self, dy: Any) -> Any:
        x, idx = self._need_cache("_cache")
        xp = self.backend.xp
        dy2 = dy.reshape(-1, self.units)
        winner = xp.arange(self.pieces) == idx[..., None]  # one-hot of the winning piece
        dz = (winner * dy2[..., None]).reshape(dy2.shape[0], -1)
        x2 = x.reshape(-1, x.shape[-1])
        self.params["weight"].grad += self.backend.matmul(x2.T, dz)
        self.params["bias"].grad += dz.sum(axis=0)
        return self.backend.matmul(dz, self.params["weight"].data.T).reshape(x.shape)
