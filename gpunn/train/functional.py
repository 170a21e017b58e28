"""The graph of a functional model: the layer calls between gpunn.Input tensors and outputs.

`Graph(inputs, outputs)` walks the symbolic tensors back from the outputs (each remembers the
layer call that made it, gpunn.layers.symbolic.Node), checks that every input it reaches is one
of `inputs`, and orders the calls so that each runs after the calls producing its inputs (a DAG:
a tensor may feed several calls - fan-out - and a merge layer takes several - fan-in). A layer
object called at several places is one layer, shared: its parameters appear once and its
gradients from every call add up.

Names: each distinct layer gets a key unique in the model - its own name, or name_1, name_2 ...
when several layers (or an input) share one - which keys its state ("dense.weight"), the graph
config and `get_layer`. Each output is named after the layer that produces it (or the input it
is), made unique the same way, or by the keys of a dict given as `outputs`; those names key the
losses, metrics and logs ("<output>_loss").

Running: `run(inputs, training)` executes the calls in order and returns the outputs and the
calls as gpunn.layers.tape.Call records, each with the state its layer kept (so a shared layer's
second call does not clobber what the first call's backward needs); `backward` runs them in
reverse through gpunn.layers.tape.backpropagate. A BatchNorm whose output feeds only a ReLU runs
with it as one pass (forward_fused), as in Sequential.
"""
from __future__ import annotations

from typing import Any

from gpunn.layers.symbolic import SymbolicTensor
from gpunn.layers.tape import Call, backpropagate, state_after, state_before


class GraphError(ValueError):
    """inputs and outputs that do not make a model: not symbolic tensors, a disconnected graph, ..."""


def _tensor_list(value: Any, name: str, where: str) -> tuple[list[SymbolicTensor], list[str] | None]:
    """The tensors of `inputs` / `outputs` (one tensor, a list or tuple, or for outputs a dict
    name -> tensor, whose keys are then the names) and the dict's names, if any."""
    names = None
    if isinstance(value, dict):
        names = list(value)
        for k in names:
            if not isinstance(k, str) or not k:
                raise GraphError(f"{where}: argument '{name}' is a dict whose keys must be non-empty str names, got "
                                 f"{k!r}")
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise GraphError(f"{where}: argument '{name}' must hold at least one tensor")
    for i, t in enumerate(items):
        if not isinstance(t, SymbolicTensor):
            raise GraphError(f"{where}: argument '{name}' must be symbolic tensors (from gpunn.Input, or a layer "
                             f"called on them), but entry {i} is a {type(t).__name__}")
    return items, names


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


class Step:
    """One call to run: `layer` on the tensors `inputs` (keys), producing `output` (a key);
    `fused` is the layer absorbed into this call (a ReLU after a BatchNorm), if any."""

    __slots__ = ("layer", "inputs", "as_list", "output", "fused", "tensor")

    def __init__(self, layer: Any, inputs: list[int], as_list: bool, output: int, tensor: SymbolicTensor) -> None:
        self.layer, self.inputs, self.as_list, self.output, self.tensor = layer, inputs, as_list, output, tensor
        self.fused: Step | None = None


class Graph:
    """The calls between `inputs` and `outputs` (see the module docstring)."""

    def __init__(self, inputs: Any, outputs: Any, where: str = "Model") -> None:
        self.inputs, dict_inputs = _tensor_list(inputs, "inputs", where)
        if dict_inputs is not None:
            raise GraphError(f"{where}: argument 'inputs' must be a tensor or a list of them (their names come from "
                             "gpunn.Input(name=...)), got a dict")
        self.outputs, output_names = _tensor_list(outputs, "outputs", where)
        seen_inputs: dict[int, int] = {}
        for i, t in enumerate(self.inputs):
            if not t.is_input:
                raise GraphError(f"{where}: argument 'inputs' entry {i} is {t!r}, not a tensor made by gpunn.Input")
            if id(t) in seen_inputs:
                raise GraphError(f"{where}: argument 'inputs' lists {t!r} twice")
            seen_inputs[id(t)] = i
        self.input_names = [t.name for t in self.inputs]
        if len(set(self.input_names)) != len(self.input_names):
            raise GraphError(f"{where}: the inputs' names must be unique, got {self.input_names}; give each "
                             "gpunn.Input its own name=")
        # every tensor the outputs depend on, producers first (iterative: deep graphs are fine)
        order: list[SymbolicTensor] = []
        state: dict[int, int] = {}  # id -> 1 while on the path, 2 when placed
        for root in self.outputs:
            stack: list[tuple[SymbolicTensor, int]] = [(root, 0)]
            while stack:
                t, i = stack.pop()
                if state.get(id(t)) == 2:
                    continue
                if t.is_input:
                    if id(t) not in seen_inputs:
                        raise GraphError(f"{where}: the graph is disconnected: the outputs depend on {t!r}, which is "
                                         f"not in 'inputs' {self.input_names}")
                    state[id(t)] = 2
                    continue
                state[id(t)] = 1
                parents = t.node.inputs
                if i < len(parents):
                    stack.append((t, i + 1))
                    p = parents[i]
                    if state.get(id(p)) != 2:
                        stack.append((p, 0))
                    continue
                state[id(t)] = 2
                order.append(t)
        # keys: inputs first, then each call's output
        self._key: dict[int, int] = {id(t): k for k, t in enumerate(self.inputs)}
        for t in order:
            self._key[id(t)] = len(self._key)
        taken = set(self.input_names)
        self.layer_keys: dict[int, str] = {}  # id(layer) -> key
        self.layers: dict[str, Any] = {}
        self.node_index: dict[int, tuple[str, int]] = {}  # id(tensor) -> (layer key, call number)
        calls_of: dict[str, int] = {}
        self.steps: list[Step] = []
        for t in order:
            layer = t.node.layer
            key = self.layer_keys.get(id(layer))
            if key is None:
                key = self.layer_keys[id(layer)] = _unique(str(layer.name), taken)
                self.layers[key] = layer
            self.node_index[id(t)] = (key, calls_of.get(key, 0))
            calls_of[key] = calls_of.get(key, 0) + 1
            self.steps.append(Step(layer, [self._key[id(p)] for p in t.node.inputs], t.node.as_list,
                                   self._key[id(t)], t))
        for t in self.inputs:
            self.node_index[id(t)] = (t.name, 0)
        self.input_keys = [self._key[id(t)] for t in self.inputs]
        self.output_keys = [self._key[id(t)] for t in self.outputs]
        if output_names is None:
            out_taken: set[str] = set()
            output_names = [_unique(self.node_index[id(t)][0], out_taken) for t in self.outputs]
        self.output_names = output_names
        self._plan_fusions()
        self._last_use = self._last_uses()

    # -- planning -------------------------------------------------------------------------------
    def _plan_fusions(self) -> None:
        """Run a BatchNorm and the ReLU that alone reads its output as one call (forward_fused),
        as Sequential does: the same result with fewer passes over memory."""
        readers: dict[int, list[Step]] = {}
        for step in self.steps:
            for k in step.inputs:
                readers.setdefault(k, []).append(step)
        outputs = set(self.output_keys)
        absorbed: set[int] = set()
        for step in self.steps:
            if id(step) in absorbed or step.as_list:
                continue
            users = readers.get(step.output, [])
            if len(users) != 1 or step.output in outputs:
                continue
            nxt = users[0]
            if nxt.as_list or nxt.inputs != [step.output] or id(nxt) in absorbed:
                continue
            if getattr(step.layer, "built", False) and step.layer.fuses_with(nxt.layer):
                step.fused = nxt
                absorbed.add(id(nxt))
        self.steps = [s for s in self.steps if id(s) not in absorbed]

    def _last_uses(self) -> dict[int, int]:
        """key -> index of the last step that reads it, so run() can drop values no longer needed."""
        last: dict[int, int] = {}
        for i, step in enumerate(self.steps):
            for k in step.inputs:
                last[k] = i
        return last

    # -- running --------------------------------------------------------------------------------
    def run(self, xs: list[Any], training: bool) -> tuple[list[Any], list[Call]]:
        """The outputs for the input arrays `xs` (in input order), and the calls made."""
        values: dict[int, Any] = dict(zip(self.input_keys, xs))
        keep = set(self.output_keys)
        calls: list[Call] = []
        for i, step in enumerate(self.steps):
            args = [values[k] for k in step.inputs]
            arg = args if step.as_list else args[0]
            layer = step.layer
            if step.fused is not None:
                before = state_before([layer, step.fused.layer])
                y = layer.forward_fused(arg, step.fused.layer, training=training)
                out = step.fused.output
            else:
                before = state_before([layer])
                y = layer.forward(arg, training=training)
                out = step.output
            calls.append(Call(layer, list(step.inputs), step.as_list, out, state_after(before)))
            values[out] = y
            for k in step.inputs:
                if self._last_use.get(k) == i and k not in keep:
                    values.pop(k, None)
        return [values[k] for k in self.output_keys], calls

    def backward(self, calls: list[Call], grads: list[Any], need_input_grad: bool) -> list[Any]:
        """The gradients of the inputs (None for one no output depends on, or when not needed)
        from the gradients of the outputs (None: that output reaches no loss)."""
        start: dict[int, Any] = {}
        for k, g in zip(self.output_keys, grads):
            if g is not None:
                start[k] = g if k not in start else start[k] + g  # one tensor given as two outputs
        left = backpropagate(calls, start, need_leaf_grads=need_input_grad)
        return [left.get(k) for k in self.input_keys]

    # -- describing -----------------------------------------------------------------------------
    def ref(self, t: SymbolicTensor) -> list[Any]:
        """[layer key or input name, call number, 0]: how the config and summary name a tensor."""
        key, index = self.node_index[id(t)]
        return [key, index, 0]

    def inbound(self) -> dict[str, list[list[list[Any]]]]:
        """Layer key -> its calls, in order, each the list of refs it was called on."""
        out: dict[str, list[list[list[Any]]]] = {k: [] for k in self.layers}
        for step in self._all_steps():
            key = self.layer_keys[id(step.layer)]
            out[key].append([self.ref(p) for p in step.tensor.node.inputs])
        return out

    def _all_steps(self) -> list[Step]:
        """Every call, fused ones included, in order."""
        out = []
        for s in self.steps:
            out.append(s)
            if s.fused is not None:
                out.append(s.fused)
        return out

    def calls_with_shapes(self) -> list[tuple[str, Any, tuple[int, ...], list[list[Any]]]]:
        """(layer key, layer, output shape, inbound refs) per call, in order, for summary()."""
        return [(self.layer_keys[id(s.layer)], s.layer, s.tensor.shape, [self.ref(p) for p in s.tensor.node.inputs])
                for s in self._all_steps()]

    def output_layer(self, index: int) -> Any:
        """The layer producing output `index`, or None when that output is an input."""
        t = self.outputs[index]
        return None if t.is_input else t.node.layer
