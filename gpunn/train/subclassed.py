"""The machinery of PyTorch-style subclassed models: layers tracked as attributes, and a tape.

A subclass of gpunn.Model creates its layers in `__init__` as attributes and composes them in
`call(self, x, training=False)` with ordinary Python control flow. Two pieces make that trainable
with no hand-written backward:

- `track`: assigning a Layer to an attribute (or a list or tuple of Layers) registers it as a
  child, in assignment order, as PyTorch's Module.__setattr__ does, so parameters(), state_dict(),
  to() and freezing reach it. Re-assigning replaces it in place; assigning something else (None)
  under its name removes it. A layer already tracked under another name stays a child once.
- `forward_on_tape` runs `call` with a gpunn.layers.tape.Tape recording: every `layer(x)` inside
  it is recorded with the arrays that went in and came out. `backward_on_tape` runs the recorded
  calls' backward passes in reverse, routing each output's gradient to where it was used (fan-out
  sums). Only layers called in this forward take part; a layer called twice is two calls, each
  with its own saved state (see gpunn.layers.tape).

What `call` may do: call layers (merge layers combine outputs: gpunn.layers.Add, Concatenate, ...),
branch and loop in Python, and return one array or a list/tuple of them (several outputs), each
the output of a layer call or an input. Array arithmetic between layers (`a + b`, `x[:, :2]`)
is not recorded; a layer fed such an array raises a TypeError saying so.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any

from gpunn.layers.base import Layer
from gpunn.layers.tape import Call, Tape, backpropagate, recording


# -- attribute tracking -------------------------------------------------------------------------
def _layers_in(value: Any) -> list[Layer] | None:
    """The layers `value` holds when it is a Layer or a non-empty list/tuple of Layers, else None."""
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
        return list(value)
    return None


def track(model: Any, name: str, value: Any) -> None:
    """Register the layers of attribute `name` as children (see the module docstring); called
    before the attribute is set."""
    children = vars(model).get("children")
    layers = _layers_in(value)
    if children is None:
        if layers is not None:
            raise RuntimeError(f"{type(model).__name__}: layer attribute {name!r} assigned before Model.__init__ ran; "
                               "call super().__init__() first in your __init__")
        return
    if name.startswith("__") or name in ("children", "params", "buffers"):
        return
    own = [k for k in children if k == name or k.startswith(f"{name}.")]
    if layers is None:
        for k in own:  # the attribute now holds something else: no longer a child
            del children[k]
        return
    others = {id(c) for k, c in children.items() if k not in own}
    if isinstance(value, Layer) and name in children and id(value) not in others:
        children[name] = model._adopt(value)  # replaced in place: the order of assignment is kept
        return
    for k in own:
        del children[k]
    if isinstance(value, Layer):
        if id(value) not in others:  # an alias of a child already tracked stays one child
            children[name] = model._adopt(value)
        return
    for i, layer in enumerate(layers):
        if id(layer) not in others:
            others.add(id(layer))
            children[f"{name}.{i}"] = model._adopt(layer)


# -- running ------------------------------------------------------------------------------------
def _structure_keys(tape: Tape, x: Any, where: str) -> Any:
    """Keys for the model's inputs: one array, a list/tuple of arrays, or a dict name -> array."""
    def leaf(a: Any, label: str) -> int:
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"{where}: argument '{label}' must be an array, got {type(a).__name__}")
        return tape.watch(a)
    if isinstance(x, dict):
        return {k: leaf(v, f"x[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [leaf(v, f"x[{i}]") for i, v in enumerate(x)]
    return leaf(x, "x")


class TapeRun:
    """What one forward of a subclassed model recorded: the calls, the keys of its inputs (in
    the structure they were given), and the keys of its outputs."""

    __slots__ = ("calls", "input_keys", "output_keys", "several", "output_layers", "input_shapes")

    def __init__(self, calls: list[Call], input_keys: Any, output_keys: list[int], several: bool,
                 output_layers: list[Any], input_shapes: Any) -> None:
        self.calls, self.input_keys, self.output_keys = calls, input_keys, output_keys
        self.several, self.output_layers, self.input_shapes = several, output_layers, input_shapes


def _takes_training(call: Any) -> bool:
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return True
    return "training" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _shapes_of(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple(tuple(v.shape[1:]) for v in x.values())
    if isinstance(x, (list, tuple)):
        return tuple(tuple(v.shape[1:]) for v in x)
    return tuple(x.shape[1:])


def forward_on_tape(model: Any, x: Any, training: bool) -> tuple[Any, TapeRun]:
    """`model.call(x, training)` with its layer calls recorded; the outputs and the record."""
    where = f"{model.name}.forward"
    tape = Tape(training, model.name, model._dtype)
    input_keys = _structure_keys(tape, x, where)
    call = model.call
    with recording(tape):
        out = call(x, training=training) if _takes_training(call) else call(x)
    several = isinstance(out, (list, tuple))
    outs = list(out) if several else [out]
    if not outs:
        raise TypeError(f"{model.name}.call: returned an empty {type(out).__name__}; return an array or a list of them")
    keys = []
    for i, o in enumerate(outs):
        key = tape.key_of(o) if hasattr(o, "shape") else None
        if key is None:
            which = f"output {i}" if several else "its output"
            raise TypeError(f"{model.name}.call: {which} ({type(o).__name__}) is neither an input nor the output of a "
                            "layer called in this forward; array operations (a + b, x[:, :2]) are not taped - end "
                            "call() with a layer (a merge layer such as gpunn.layers.Add combines outputs)")
        keys.append(key)
    _warn_strays(model, tape.calls)
    producer = {c.output: c.layer for c in tape.calls}
    run = TapeRun(tape.calls, input_keys, keys, several, [producer.get(k) for k in keys], _shapes_of(x))
    return out, run


def _walk(layer: Any) -> Any:
    yield layer
    for child in layer.children.values():
        yield from _walk(child)


def _warn_strays(model: Any, calls: list[Call]) -> None:
    """Warn once per model about a layer with parameters called in call() that the model does not
    own (made inside call(), or kept elsewhere): its parameters are neither trained nor saved."""
    if vars(model).get("_warned_strays"):
        return
    owned = {id(layer) for layer in _walk(model)}
    strays = {id(c.layer): c.layer for c in calls if id(c.layer) not in owned and c.layer.parameters()}
    if strays:
        object.__setattr__(model, "_warned_strays", True)
        names = ", ".join(repr(layer.name) for layer in strays.values())
        warnings.warn(f"{model.name}.call: layers {names} have parameters but are not attributes of the model, so "
                      "the optimizer does not train them and save does not keep them; create them in __init__ as "
                      "attributes (self.dense = Dense(...))", UserWarning, stacklevel=4)


def backward_on_tape(run: TapeRun, dy: Any, need_input_grad: bool, where: str) -> Any:
    """The gradients of the inputs (in their structure; None where not needed), from those of
    the outputs: one array, or a list for several outputs (None: that output reaches no loss)."""
    if run.several:
        if not isinstance(dy, (list, tuple)) or len(dy) != len(run.output_keys):
            raise ValueError(f"{where}: argument 'dy' must be a list of {len(run.output_keys)} gradients, one per "
                             f"output, got {type(dy).__name__}")
        dys = list(dy)
    else:
        dys = [dy]
    start: dict[int, Any] = {}
    for k, g in zip(run.output_keys, dys):
        if g is not None:
            start[k] = g if k not in start else start[k] + g
    left = backpropagate(run.calls, start, need_leaf_grads=need_input_grad)
    keys = run.input_keys
    if isinstance(keys, dict):
        return {k: left.get(v) for k, v in keys.items()}
    if isinstance(keys, list):
        return [left.get(v) for v in keys]
    return left.get(keys)
