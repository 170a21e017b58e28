"""Layer: the base every layer derives from.

Contract: `build(input_shape)` creates parameters (shape excludes the batch axis; called
lazily by the first forward); `forward(x, training)` returns y and keeps what backward needs;
`backward(dy)` returns dx and *accumulates* into each `param.grad`. Layers are thin: shape
bookkeeping plus calls into backend ops, never a branch on the device.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import check_float_array
from gpunn.backend import Backend, get_backend
from gpunn.init import get_initializer
from gpunn.parameter import Parameter
from gpunn.random import host_rng


class Layer:
    #: accepted input ranks (with the batch axis) and how to describe them in errors
    input_ndim: int | tuple[int, ...] | None = None
    input_layout: str = ""

    def __init__(self, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, Any] = {}  # state that is saved but not trained (running stats)
        self.children: dict[str, Layer] = {}  # sublayers; their state is saved as "child.key"
        self.name = name or type(self).__name__
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        self.output_shape: tuple[int, ...] | None = None
        self.built = False
        self._trainable = True
        self._dtype: np.dtype | None = None

    # -- building -----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        return get_backend()

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create parameters for inputs of `input_shape` (no batch axis). Subclasses extend this."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def add_param(self, name: str, shape: tuple[int, ...], initializer: Any, fans: tuple[int, int] | None = None,
                  trainable: bool = True) -> Parameter:
        init = get_initializer(initializer)
        host = init(tuple(shape), dtype=self.dtype, rng=host_rng(), fans=fans)
        param = Parameter(self.backend.asarray(host), name=name, trainable=trainable and self._trainable)
        self.params[name] = param
        return param

    @property
    def dtype(self) -> np.dtype:
        return self._dtype or self.backend.default_dtype

    def _prepare(self, x: Any, where: str = "forward") -> Any:
        """Validate the input of forward(), move it to the backend, and build on first use."""
        label = f"{self.name}.{where}"
        if isinstance(x, (list, tuple)):
            x = np.asarray(x)
        check_float_array(x, "x", label, self.input_ndim, self.input_layout)
        if not self.backend.is_native(x):
            x = self.backend.asarray(x)
        if not self.built:
            if self._dtype is None:
                self._dtype = np.dtype(x.dtype)
            self.build(tuple(x.shape[1:]))
        else:
            self.check_built_shape(tuple(x.shape[1:]), label)
        return x

    def check_built_shape(self, shape: tuple[int, ...], where: str) -> None:
        """Raise if an input of per-sample `shape` does not fit the built parameters."""
        if self.input_shape is not None and shape != self.input_shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self.input_shape} as built, "
                             f"got {shape}")

    # -- computing ----------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError

    def fuses_with(self, nxt: Layer) -> bool:
        """Whether Sequential may run this layer and the next one, `nxt`, as one through
        forward_fused (whose backward() then includes nxt's). No layer fuses unless it says so."""
        return False

    def forward_fused(self, x: Any, nxt: Layer, training: bool = False) -> Any:
        """nxt.forward(self.forward(x)) in fewer passes; only called when fuses_with(nxt)."""
        raise NotImplementedError

    def __call__(self, x: Any, training: bool = False) -> Any:
        return self.forward(x, training=training)

    def _need_cache(self, attr: str) -> Any:
        value = getattr(self, attr, None)
        if value is None:
            raise RuntimeError(f"{self.name}.backward: called before forward(); run forward first")
        return value

    # -- parameters and state -----------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        out = [(prefix + k, p) for k, p in self.params.items()]
        for cname, child in self.children.items():
            out += child.named_parameters(f"{prefix}{cname}.")
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def _named_state(self, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {prefix + k: p.data for k, p in self.params.items()}
        out.update({prefix + k: b for k, b in self.buffers.items()})
        for cname, child in self.children.items():
            out.update(child._named_state(f"{prefix}{cname}."))
        return out

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for p in self.params.values():
            p.trainable = self._trainable
        for child in self.children.values():
            child.trainable = value

    def constraints(self) -> list[tuple[Parameter, Any]]:
        """(parameter, constraint) pairs of this layer and its sublayers, for an optimizer to apply
        after each step (`p.data[...] = c(p.data)`, see gpunn.constraints.apply_constraints).
        A layer declares its own in `self.param_constraints`, a dict from param name to constraint."""
        own = getattr(self, "param_constraints", None) or {}
        out = [(self.params[k], c) for k, c in own.items() if k in self.params]
        for child in self.children.values():
            out += child.constraints()
        return out

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def count_params(self) -> int:
        return sum(p.size for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers (recursively) as host NumPy arrays, by dotted name."""
        return {k: self.backend.to_numpy(v).copy() for k, v in self._named_state().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values in place (optimizer views stay valid). Validates everything before writing."""
        where = f"{self.name}.load_state_dict"
        if not self.built:
            raise RuntimeError(f"{where}: build the layer (or run one forward) before loading state")
        targets = self._named_state()
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise KeyError(f"{where}: argument 'state' keys do not match: missing {missing}, unexpected {unexpected}")
        for key, target in targets.items():
            value = state[key]
            if tuple(np.shape(value)) != tuple(target.shape):
                raise ValueError(f"{where}: argument 'state[{key!r}]' must have shape {tuple(target.shape)}, "
                                 f"got {tuple(np.shape(value))}")
        for key, target in targets.items():
            target[...] = self.backend.asarray(state[key], dtype=target.dtype)

    def to_dtype(self, dtype: Any) -> Layer:
        """Cast parameters and buffers, recursively (e.g. to float64 for gradient checks)."""
        self._dtype = np.dtype(dtype)
        for p in self.params.values():
            p.data = p.data.astype(dtype)
            p.grad = p.grad.astype(dtype)
        self.buffers = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in self.buffers.items()}
        for child in self.children.values():
            child.to_dtype(dtype)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, output_shape={self.output_shape})"
