"""WeightNorm (Salimans and Kingma 2016): reparametrize a Dense or Conv2D weight as g * v / ||v||.

The norm is taken per output unit: over the input axis (0) of a Dense weight (features, units)
and over (channels, kh, kw) of a Conv2D weight (filters, channels, kh, kw), so g has one entry
per unit, as PyTorch's weight_norm(dim=0) does for its (out, in) layout.

The wrapped layer keeps its `weight` Parameter, but only as a scratch slot: WeightNorm writes
g * v / ||v|| into it before each forward and turns the gradient that lands in it into
gradients for g and v. It is therefore left out of parameters(), state_dict() and constraints();
`g`, `v` and the wrapped layer's bias are the trained parameters.
"""
from __future__ import annotations

from typing import Any

from gpunn.layers.base import Layer
from gpunn.parameter import Parameter


class WeightNorm(Layer):
    def __init__(self, layer: Layer, name: str | None = None) -> None:
        super().__init__(name=name or f"WeightNorm({layer.name})")
        from gpunn.layers.conv import Conv2D
        from gpunn.layers.dense import Dense
        if not isinstance(layer, (Dense, Conv2D)):
            raise TypeError(f"WeightNorm: argument 'layer' must be a Dense or Conv2D layer, got {type(layer).__name__}")
        self.children["layer"] = self._adopt(layer)  # on the wrapper's backend, like any container's child
        self.input_shape = layer.input_shape
        self._dtype = layer._dtype  # a wrapper computes in its layer's dtype (None: the default)
        self._norm_axes: tuple[int, ...] = (0,) if isinstance(layer, Dense) else (1, 2, 3)
        self._cache: Any = None

    @property
    def layer(self) -> Layer:
        return self.children["layer"]

    def build(self, input_shape: tuple[int, ...]) -> None:
        inner = self.layer
        if inner._dtype is None:
            inner._dtype = self._dtype
        if not inner.built:
            inner.build(input_shape)
        super().build(input_shape)
        w = inner.params["weight"].data
        v = w.copy()
        self.params["v"] = Parameter(v, name="v", trainable=self.trainable)
        # g = ||v|| initially, so the wrapped layer starts from exactly its initialized weight
        self.params["g"] = Parameter(self._unit_norm(v).reshape(-1), name="g", trainable=self.trainable)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.layer.compute_output_shape(input_shape)

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        self.layer.check_built_shape(shape, where)

    def _unit_norm(self, v: Any) -> Any:
        """||v|| per output unit, shaped to broadcast against v."""
        xp = self.backend.xp
        return xp.sqrt((v * v).sum(axis=self._norm_axes, keepdims=True))

    def _g_shaped(self, like: Any) -> Any:
        g = self.params["g"].data
        return g.reshape(1, -1) if self._norm_axes == (0,) else g.reshape(-1, 1, 1, 1)

    def forward(self, x: Any, training: bool = False) -> Any:
        if getattr(x, "ndim", 2) < 2:
            raise ValueError(f"{self.name}.forward: argument 'x' must have a batch axis, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        x = self._prepare(x)
        v = self.params["v"].data
        norm = self._unit_norm(v)
        if bool((norm == 0).any()):
            raise FloatingPointError(f"{self.name}.forward: a row of parameter 'v' has zero norm; "
                                     "g * v / ||v|| is undefined")
        weight = self.layer.params["weight"]
        weight.data[...] = self._g_shaped(v) * v / norm
        self._cache = norm
        return self.layer.forward(x, training)

    def backward(self, dy: Any) -> Any:
        norm = self._need_cache("_cache")
        weight = self.layer.params["weight"]
        weight.grad[...] = 0  # scratch: holds exactly this call's dL/dw
        dx = self.layer.backward(dy)
        dw = weight.grad
        v = self.params["v"].data
        g = self._g_shaped(v)
        # w = g v/||v||: dg = <dw, v>/||v||;  dv = g/||v|| dw - g dg v/||v||^2
        dg = (dw * v).sum(axis=self._norm_axes, keepdims=True) / norm
        self.params["g"].grad += dg.reshape(-1)
        self.params["v"].grad += (g / norm) * dw - (g * dg / (norm * norm)) * v
        return dx

    # the wrapped weight is derived, not trained or saved (see the module docstring)
    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        skip = f"{prefix}layer.weight"
        return [(k, p) for k, p in super().named_parameters(prefix) if k != skip]

    def _named_state(self, prefix: str = "") -> dict[str, Any]:
        skip = f"{prefix}layer.weight"
        return {k: v for k, v in super()._named_state(prefix).items() if k != skip}

    def constraints(self) -> list[tuple[Parameter, Any]]:
        weight = self.layer.params.get("weight")
        return [(p, c) for p, c in super().constraints() if p is not weight]
