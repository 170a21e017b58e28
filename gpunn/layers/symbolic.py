"""Symbolic tensors: the placeholders of the Keras-style functional API.

`Input(shape=(1, 28, 28), name="image")` returns a SymbolicTensor. Calling a layer on symbolic
tensors (Layer.__call__) builds the layer for their shapes and returns a new SymbolicTensor whose
`node` remembers the call: the layer and the inbound tensors. gpunn.Model(inputs=..., outputs=...)
walks these nodes back from the outputs to find its graph. Nothing here computes: a symbolic
tensor holds a per-sample shape (no batch axis) and where it came from, never values.

A symbolic tensor has no value, so arithmetic on it (`a + b`), truth tests and conversion to an
array raise a TypeError that points to the merge layers (gpunn.layers.Add, Concatenate, ...).

This module imports nothing from gpunn.layers: the layer base imports it, and duck-types the
layer it is given (build, built, output_shape, check_built_shape, compute_output_shape).
"""
from __future__ import annotations

import itertools
import threading
from typing import Any

from gpunn._checks import name_arg, shape_arg

_counter_lock = threading.Lock()
_input_counter = itertools.count(1)


def _no_value(op: str) -> Any:
    def refuse(self: SymbolicTensor, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self!r} is symbolic and has no value, so '{op}' cannot be applied to it; combine "
                        "tensors with a layer: gpunn.layers.Add, Subtract, Multiply, Average, Maximum or "
                        "Concatenate")
    refuse.__name__ = f"__{op}__"
    return refuse


class Node:
    """One call of a layer in a graph: `layer` applied to `inputs` (SymbolicTensors), given as a
    list when `as_list` (a merge layer) and as the single tensor otherwise."""

    __slots__ = ("layer", "inputs", "as_list")

    def __init__(self, layer: Any, inputs: list[SymbolicTensor], as_list: bool) -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.as_list = bool(as_list)


class SymbolicTensor:
    """A placeholder of per-sample `shape` (no batch axis): a model input (`node` is None, `name`
    is the input's name) or the output of `node`."""

    __slots__ = ("shape", "node", "name", "__weakref__")

    def __init__(self, shape: tuple[int, ...], node: Node | None = None, name: str | None = None) -> None:
        self.shape = tuple(shape)
        self.node = node
        self.name = name

    @property
    def is_input(self) -> bool:
        """Whether this tensor is a model input made by Input()."""
        return self.node is None

    def __repr__(self) -> str:
        where = f"input {self.name!r}" if self.node is None else f"output of {self.node.layer.name!r}"
        return f"SymbolicTensor(shape={('N', *self.shape)}, {where})"

    # a symbolic tensor has no value: say so instead of failing somewhere inside NumPy
    __add__ = __radd__ = _no_value("add")
    __sub__ = __rsub__ = _no_value("sub")
    __mul__ = __rmul__ = _no_value("mul")
    __truediv__ = __rtruediv__ = _no_value("truediv")
    __matmul__ = __rmatmul__ = _no_value("matmul")
    __pow__ = _no_value("pow")
    __neg__ = _no_value("neg")
    __getitem__ = _no_value("getitem")
    __bool__ = _no_value("bool")
    __array__ = _no_value("array")


def Input(shape: Any, name: str | None = None) -> SymbolicTensor:  # noqa: N802 - Keras's name
    """A model input of per-sample `shape` (no batch axis), e.g. Input(shape=(1, 28, 28), name="image").

    `name` keys the input in dicts given to fit / evaluate / predict; it defaults to "input_<k>"
    (k counts the Inputs made in this process, as Keras does)."""
    where = "Input"
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)  # Input(shape=8): the common shorthand for a vector of 8 features
    shape = shape_arg(shape, where)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{where}: argument 'shape' must be a non-empty tuple of positive ints (the per-sample "
                         f"shape, without the batch axis), got {shape}")
    if name is None:
        with _counter_lock:
            name = f"input_{next(_input_counter)}"
    else:
        name = name_arg(name, "name", where)
    return SymbolicTensor(shape, None, name)


def symbolic_inputs(x: Any) -> list[SymbolicTensor] | None:
    """The symbolic tensors in a layer call's argument (a tensor, or a list/tuple of them), or
    None when it holds none. A mix of symbolic tensors and arrays is an error."""
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    found = [isinstance(t, SymbolicTensor) for t in items]
    if not any(found):
        return None
    if not all(found):
        kinds = ", ".join(type(t).__name__ for t in items)
        raise TypeError(f"a layer call mixes symbolic tensors and arrays ({kinds}); in a functional model every "
                        "input of a layer must be a symbolic tensor (from gpunn.Input or another layer's call)")
    return items


def symbolic_call(layer: Any, x: Any, output_shape: Any) -> SymbolicTensor:
    """The tensor that `layer(x)` stands for: `output_shape(shapes)` (the layer's own shape
    inference, which builds it on first use) applied to the inbound shapes, with a Node
    recording the call. Merge layers (`layer.multi_input`) take a list; others one tensor."""
    where = f"{layer.name}.__call__"
    items = symbolic_inputs(x)
    multi = bool(getattr(layer, "multi_input", False))
    as_list = isinstance(x, (list, tuple))
    if multi and not as_list:
        raise TypeError(f"{where}: argument 'x' must be a list of tensors for a merge layer, got one {x!r}")
    if not multi and as_list:
        raise TypeError(f"{where}: argument 'x' must be one tensor, got a {type(x).__name__} of {len(items)}; "
                        "to combine several tensors use a merge layer (gpunn.layers.Add, Concatenate, ...)")
    shapes = [t.shape for t in items]
    out = tuple(output_shape(shapes if multi else shapes[0]))
    if not all(isinstance(s, int) for s in out):
        raise TypeError(f"{where}: {layer.name!r} has several outputs {out}; a call in a graph makes one tensor, so "
                        "call the layers inside it instead")
    return SymbolicTensor(out, Node(layer, items, as_list))
