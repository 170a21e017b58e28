"""Layer calls recorded in order, and their backward passes run in reverse.

A model that is more than a chain (gpunn.Model: a functional graph, or a subclass composing
layers in `call`) runs layer calls one after another and then has to run their backward passes in
reverse, sending the gradient of each call's output to the calls that used it (summed where one
output fed several) and each input gradient on to whoever produced that input. This module holds
that machinery once for both kinds of model:

- `Call`: one execution of a layer, its inputs and output named by keys (ints);
- `backpropagate(calls, grads)`: the backward passes of `calls` in reverse;
- `Tape` and `recording(tape)`: the recorder of a subclassed model's forward. While a tape is
  recording in this thread, `Layer.__call__` hands each call to `tape.record`, which runs the
  layer and notes which arrays went in and came out. It records layer calls, not array
  operations: an array made in between (`a + b`, `x[:, :2]`) is unknown to it and refused.

A layer keeps what its backward needs on itself (Dense its input, Dropout its mask, Conv2D its
columns, `_output_seen` the output's shape). A layer called at several places in one forward (a
shared layer) would have the first call's state overwritten by the second. So each Call keeps a
snapshot of the attributes that its forward rebound (or set again to the object they held), on
the layer and on every sublayer (`state_after`), and `backpropagate` puts them back just before that call's backward. Layers must
therefore rebind, not mutate in place, what they keep for backward; every gpunn layer does.

This module imports nothing from gpunn.layers (the layer base imports it) and duck-types layers:
`children`, `forward`, `backward`, `name`, `multi_input`, `needs_input_grad`.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

_active = threading.local()  # .stack: the tapes recording in this thread (None: recording suspended)


def _walk(layer: Any) -> Iterator[Any]:
    yield layer
    for child in getattr(layer, "children", {}).values():
        yield from _walk(child)


def state_before(layers: Iterable[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Shallow copies of the attributes of `layers` and their sublayers. The copies keep the old
    values alive, so `state_after` can tell a rebound attribute by identity (no address reuse)."""
    return [(layer, dict(vars(layer))) for root in layers for layer in _walk(root)]


#: per layer, the attributes any of its calls was ever seen to set: a call that sets one to the very
#: object it already held (the same input array as the last call that a backward restored, a
#: captured step's static buffer) rebinds nothing by identity, yet its backward needs it restored
_kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state_after(before: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """What the call in between kept for its backward: the attributes rebound since `before`, and
    those its layer's calls were seen to set before (see `_kept`), with their values now."""
    out = []
    for layer, old in before:
        now = vars(layer)
        changed = {k: v for k, v in now.items() if k not in old or old[k] is not v}
        try:
            known = _kept.setdefault(layer, set())
        except TypeError:  # not weak-referenceable: identity alone
            known = set()
        known.update(changed)
        changed.update({k: now[k] for k in known if k in now and k not in changed})
        if changed:
            out.append((layer, changed))
    return out


def restore_state(state: list[tuple[Any, dict[str, Any]]]) -> None:
    """Put back what a call's forward kept (see state_after), bypassing any __setattr__ hook."""
    for layer, attrs in state:
        vars(layer).update(attrs)


class Call:
    """One execution of `layer`: `inputs` (keys) went in, given as a list when `as_list`, and
    `output` (a key) came out; `state` is what its forward kept (see state_after)."""

    __slots__ = ("layer", "inputs", "as_list", "output", "state")

    def __init__(self, layer: Any, inputs: list[int], as_list: bool, output: int,
                 state: list[tuple[Any, dict[str, Any]]]) -> None:
        self.layer, self.inputs, self.as_list, self.output, self.state = layer, inputs, as_list, output, state


def _accumulate(grads: dict[int, Any], key: int, g: Any) -> None:
    # never in place: the same array may be the gradient of several inputs (Add's backward)
    if g is None:
        return
    grads[key] = g if key not in grads else grads[key] + g


def backpropagate(calls: list[Call], grads: dict[int, Any], need_leaf_grads: bool = True) -> dict[int, Any]:
    """Run the backward passes of `calls` (in execution order) in reverse, starting from `grads`
    (key -> gradient of that output; outputs without one get none). Each call whose output got a
    gradient restores its state and runs its layer's backward; the input gradients are summed
    per key. Returns the gradients of the leaves (keys no call produced: the model's inputs).

    `need_leaf_grads=False` (the training loop) lets a call whose inputs are all leaves skip its
    input gradient where the layer can (Conv2D's needs_input_grad)."""
    grads = dict(grads)
    produced = {c.output for c in calls}
    for call in reversed(calls):
        g = grads.pop(call.output, None)
        if g is None:
            continue  # nothing downstream of this call reached a loss
        restore_state(call.state)
        layer = call.layer
        to_leaves_only = all(k not in produced for k in call.inputs)
        skip = not need_leaf_grads and to_leaves_only
        toggle = skip and getattr(layer, "needs_input_grad", None) is True
        if toggle:
            layer.needs_input_grad = False
        try:
            dx = layer.backward(g)
        finally:
            if toggle:
                layer.needs_input_grad = True
        if skip:
            continue
        if call.as_list:
            if not isinstance(dx, (list, tuple)) or len(dx) != len(call.inputs):
                raise RuntimeError(f"{layer.name}.backward: a layer called on a list of {len(call.inputs)} inputs "
                                   f"must return a list of {len(call.inputs)} gradients, got {type(dx).__name__}")
            for key, d in zip(call.inputs, dx):
                _accumulate(grads, key, d)
        else:
            _accumulate(grads, call.inputs[0], dx)
    return grads


def active_tape() -> Tape | None:
    """The tape recording layer calls in this thread, if any."""
    stack = getattr(_active, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def recording(tape: Tape | None) -> Iterator[Tape | None]:
    """Make `tape` the one Layer.__call__ records onto in this block (None: record nothing)."""
    stack = getattr(_active, "stack", None)
    if stack is None:
        stack = _active.stack = []
    stack.append(tape)
    try:
        yield tape
    finally:
        stack.pop()


class Tape:
    """The layer calls of one forward of a subclassed model, with the arrays they passed.

    Arrays are known by identity: `watch` gives the model's inputs keys, and `record` gives each
    call's output one. The tape keeps a reference to every array it knows, so no identity is
    reused while it lives."""

    def __init__(self, training: bool, owner: str, dtype: Any = None) -> None:
        self.training = bool(training)
        self.owner = owner  # the model's name, for errors
        self.dtype = dtype  # the model's explicit dtype: layers made inside call() compute in it too
        self.calls: list[Call] = []
        self._keys: dict[int, int] = {}
        self._arrays: list[Any] = []

    def watch(self, array: Any) -> int:
        """A new key for `array` (a model input, or a call's output); later uses of it mean this one."""
        key = len(self._arrays)
        self._arrays.append(array)
        self._keys[id(array)] = key
        return key

    def key_of(self, array: Any) -> int | None:
        return self._keys.get(id(array))

    def _input_keys(self, layer: Any, items: list[Any]) -> list[int]:
        keys = []
        for i, a in enumerate(items):
            key = self.key_of(a)
            if key is None:
                which = f"input {i}" if len(items) > 1 else "input"
                raise TypeError(
                    f"{self.owner}.call: layer {layer.name!r} got an {which} ({type(a).__name__}) that is neither "
                    "an input of the model nor the output of a layer called in this forward. The model records "
                    "layer calls, not array operations: arithmetic or slicing between layers (a + b, x[:, :2], "
                    "x.reshape(...)) and layer.forward(x) are not taped. Combine outputs with a merge layer "
                    "(gpunn.layers.Add, Subtract, Multiply, Average, Maximum, Concatenate), reshape with a layer "
                    "(Flatten), and call layers as layer(x)")
            keys.append(key)
        return keys

    def record(self, layer: Any, x: Any, training: bool) -> Any:
        """Run `layer.forward(x, training)` and record the call (see the module docstring)."""
        multi = bool(getattr(layer, "multi_input", False))
        as_list = isinstance(x, (list, tuple))
        if multi and not as_list:
            raise TypeError(f"{layer.name}.__call__: argument 'x' must be a list of arrays for a merge layer, "
                            f"got {type(x).__name__}")
        if as_list and not multi:
            raise TypeError(f"{layer.name}.__call__: argument 'x' must be one array, got a {type(x).__name__}; "
                            "combine several with a merge layer (gpunn.layers.Add, Concatenate, ...)")
        items = list(x) if as_list else [x]
        keys = self._input_keys(layer, items)
        if self.dtype is not None and not layer.built and layer._dtype is None:
            layer._dtype = self.dtype  # a layer made inside call() (a merge): the model's dtype, not float32
        before = state_before([layer])
        with recording(None):  # calls the layer makes inside its own forward are its business
            y = layer.forward(list(items) if as_list else x, training=training)
        if not hasattr(y, "shape"):
            raise TypeError(f"{self.owner}.call: layer {layer.name!r} returned a {type(y).__name__}; a layer called "
                            "inside call() must return one array")
        state = state_after(before)
        self.calls.append(Call(layer, keys, as_list, self.watch(y), state))
        return y
