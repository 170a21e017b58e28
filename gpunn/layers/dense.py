"""Dense: y = x @ W + b (the seeds' H(X) = XW + b), on the last axis of any rank >= 2."""
from __future__ import annotations

from typing import Any

from gpunn._checks import positive_int
from gpunn.layers.base import Layer
from gpunn.layers.kernel_options import FeaturesInput, add_penalty_gradient, attach_kernel_options
from gpunn.precision import accumulation_dtype


class Dense(FeaturesInput, Layer):

    def __init__(self, units: int, activation: str | Layer | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 input_shape: tuple[int, ...] | None = None, name: str | None = None, kernel_regularizer: Any = None,
                 kernel_constraint: Any = None) -> None:
        super().__init__(input_shape=input_shape, name=name)
        self.units = positive_int(units, "units", "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        attach_kernel_options(self, activation, kernel_regularizer, kernel_constraint)
        self._x: Any = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}.build: argument 'input_shape' must have at least one axis, got {input_shape}")
        super().build(input_shape)
        fan_in = input_shape[-1]
        self.add_param("weight", (fan_in, self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_initializer, fans=(fan_in, self.units))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], self.units)

    def forward(self, x: Any, training: bool = False) -> Any:
        self.check_rank(x)
        x = self._prepare(x)
        self._x = x
        y = self.backend.matmul(x, self.params["weight"].data)
        if self.use_bias:
            y += self.params["bias"].data
        act = self.children.get("activation")
        return act.forward(y, training) if act is not None else y

    def backward(self, dy: Any) -> Any:
        x = self._need_cache("_x")
        act = self.children.get("activation")
        if act is not None:
            dy = act.backward(dy)
        w = self.params["weight"]
        x2 = x.reshape(-1, x.shape[-1])
        dy2 = dy.reshape(-1, self.units)
        self.backend.matmul_acc(w.grad, x2.T, dy2)  # w.grad += x2.T @ dy2, in place
        add_penalty_gradient(self, w)
        if self.use_bias:
            self.params["bias"].grad += dy2.sum(axis=0, dtype=accumulation_dtype(dy2.dtype))
        return self.backend.matmul(dy, w.data.T)
