"""The graph config of a functional gpunn.Model, and a subclassed model's build shapes, checked as
hostile input before anything is constructed.

A graph config (what gpunn.io.config writes under "graph", in the spirit of Keras's):

    {"inputs": [{"name": "image", "shape": [1, 28, 28]}, ...],
     "layers": [{"name": "dense", "layer": {"class": ..., "config": ..., "trainable": ...},
                 "inbound_nodes": [[["image", 0, 0]], ...]}, ...],
     "outputs": [["dense", 0, 0], ...],
     "output_names": ["dense", ...]}

Each layer lists its calls in order ("inbound_nodes"), each call the tensors it was called on; a
tensor is named by a ref [layer name or input name, call number, 0]. `check_graph` verifies the
JSON types, the sizes (at most MAX_GRAPH_LAYERS layers, MAX_GRAPH_NODES calls, MAX_NODE_INPUTS
tensors per call, MAX_GRAPH_IO inputs and outputs), unique names, that every ref names an input
or an existing call, and that the calls can be ordered (no cycle, every call reached from the
inputs); it returns that order. Nothing here imports a class or builds a layer.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

MAX_GRAPH_LAYERS = 10_000
MAX_GRAPH_NODES = 100_000
MAX_NODE_INPUTS = 1024
MAX_GRAPH_IO = 1024
MAX_NAME = 200
MAX_SHAPE_ELEMENTS = 2 ** 31


class GraphConfigError(ValueError):
    """A graph config (or build-shape record) that does not describe a model."""


def _fail(where: str, message: str) -> GraphConfigError:
    return GraphConfigError(f"{where}: {message}")


def _obj(value: Any, keys: tuple[str, ...], what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"{what} must be an object, got {type(value).__name__}")
    if set(value) != set(keys):
        raise _fail(where, f"{what} must have exactly the keys {list(keys)}, got {sorted(map(str, value))[:8]}")
    return value


def _list(value: Any, what: str, where: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"{what} must be a list, got {type(value).__name__}")
    if not lo <= len(value) <= hi:
        raise _fail(where, f"{what} must hold between {lo} and {hi:,} entries, got {len(value):,}")
    return value


def _name(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise _fail(where, f"{what} must be a non-empty str of at most {MAX_NAME} characters, got {str(value)[:80]!r}")
    return value


def _count(value: Any, what: str, where: str, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi:
        raise _fail(where, f"{what} must be an int in [0, {hi}], got {str(value)[:40]}")
    return value


def check_shape(value: Any, what: str, where: str) -> tuple[int, ...]:
    """A per-sample shape: a non-empty list of positive ints holding at most MAX_SHAPE_ELEMENTS."""
    if not isinstance(value, list) or not value or len(value) > 32 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SHAPE_ELEMENTS for s in value):
        raise _fail(where, f"{what} must be a non-empty list of positive ints, got {str(value)[:80]}")
    if math.prod(value) > MAX_SHAPE_ELEMENTS:
        raise _fail(where, f"{what} {tuple(value)} holds more than {MAX_SHAPE_ELEMENTS:,} elements per sample")
    return tuple(value)


def check_shape_tree(value: Any, what: str, where: str) -> Any:
    """A shape, or a list of shapes (a layer or model with several inputs): as tuples."""
    if isinstance(value, list) and value and all(isinstance(s, list) for s in value):
        _list(value, what, where, 1, MAX_GRAPH_IO)
        return tuple(check_shape(s, f"{what}[{i}]", where) for i, s in enumerate(value))
    return check_shape(value, what, where)


def check_build_shapes(value: Any, where: str) -> dict[str, Any]:
    """A subclassed model's {layer path: the input shape it was built for}."""
    if not isinstance(value, dict):
        raise _fail(where, f"'built_shapes' must be an object, got {type(value).__name__}")
    if len(value) > MAX_GRAPH_LAYERS:
        raise _fail(where, f"'built_shapes' names {len(value):,} layers, more than {MAX_GRAPH_LAYERS:,}")
    return {_name(k, "a 'built_shapes' key", where): check_shape_tree(v, f"'built_shapes'[{str(k)[:40]!r}]", where)
            for k, v in value.items()}


def _ref(value: Any, what: str, where: str) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise _fail(where, f"{what} must be a tensor ref [name, call number, 0], got {str(value)[:80]}")
    name = _name(value[0], f"{what}[0]", where)
    index = _count(value[1], f"{what}[1]", where, MAX_GRAPH_NODES)
    if value[2] != 0 or isinstance(value[2], bool):
        raise _fail(where, f"{what}[2] must be 0 (gpunn layers have one output), got {str(value[2])[:40]}")
    return name, index


def check_graph(graph: Any, where: str) -> dict[str, Any]:
    """The validated graph config (see the module docstring) with "order": the calls as
    (layer index, call number) in an order where every call comes after those it reads."""
    g = _obj(graph, ("inputs", "layers", "outputs", "output_names"), "'graph'", where)
    inputs = []
    seen: set[str] = set()
    for i, entry in enumerate(_list(g["inputs"], "'graph.inputs'", where, 1, MAX_GRAPH_IO)):
        e = _obj(entry, ("name", "shape"), f"'graph.inputs[{i}]'", where)
        name = _name(e["name"], f"'graph.inputs[{i}].name'", where)
        if name in seen:
            raise _fail(where, f"the input name {name!r} is used twice")
        seen.add(name)
        inputs.append((name, check_shape(e["shape"], f"'graph.inputs[{i}].shape'", where)))
    layers = []
    calls = 0
    for i, entry in enumerate(_list(g["layers"], "'graph.layers'", where, 0, MAX_GRAPH_LAYERS)):
        e = _obj(entry, ("name", "layer", "inbound_nodes"), f"'graph.layers[{i}]'", where)
        name = _name(e["name"], f"'graph.layers[{i}].name'", where)
        if name in seen:
            raise _fail(where, f"the name {name!r} is given to two layers (or a layer and an input)")
        seen.add(name)
        if not isinstance(e["layer"], dict):
            raise _fail(where, f"'graph.layers[{i}].layer' must be an object, got {type(e['layer']).__name__}")
        nodes = _list(e["inbound_nodes"], f"'graph.layers[{i}].inbound_nodes'", where, 1, MAX_GRAPH_NODES)
        calls += len(nodes)
        if calls > MAX_GRAPH_NODES:
            raise _fail(where, f"the graph makes more than {MAX_GRAPH_NODES:,} layer calls")
        parsed = []
        for j, node in enumerate(nodes):
            what = f"'graph.layers[{i}].inbound_nodes[{j}]'"
            refs = _list(node, what, where, 1, MAX_NODE_INPUTS)
            parsed.append([_ref(r, f"{what}[{k}]", where) for k, r in enumerate(refs)])
        layers.append({"name": name, "layer": e["layer"], "nodes": parsed})
    index = {layer["name"]: i for i, layer in enumerate(layers)}
    input_names = {name for name, _ in inputs}

    def resolve(ref: tuple[str, int], what: str) -> tuple[int, int] | None:
        name, k = ref
        if name in input_names:
            if k != 0:
                raise _fail(where, f"{what} refers to call {k} of input {name!r}; an input has only call 0")
            return None
        if name not in index:
            raise _fail(where, f"{what} refers to {name[:80]!r}, which is neither an input nor a layer of the graph")
        if k >= len(layers[index[name]]["nodes"]):
            raise _fail(where, f"{what} refers to call {k} of layer {name!r}, which is called "
                               f"{len(layers[index[name]]['nodes'])} times")
        return index[name], k

    # Kahn's algorithm over the calls: a call is ready when every call it reads is placed
    waiting: dict[tuple[int, int], int] = {}
    readers: dict[tuple[int, int], list[tuple[int, int]]] = {}
    ready: deque[tuple[int, int]] = deque()
    for li, layer in enumerate(layers):
        for ni, refs in enumerate(layer["nodes"]):
            deps = {resolve(r, f"a ref of call {ni} of layer {layer['name']!r}") for r in refs} - {None}
            waiting[(li, ni)] = len(deps)
            for d in deps:
                readers.setdefault(d, []).append((li, ni))
            if not deps:
                ready.append((li, ni))
    order = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for r in readers.get(node, []):
            waiting[r] -= 1
            if waiting[r] == 0:
                ready.append(r)
    if len(order) != len(waiting):
        stuck = sorted({layers[li]["name"] for (li, ni), w in waiting.items() if w > 0})
        raise _fail(where, f"the graph has a cycle: the calls of layers {stuck[:8]} wait on each other")
    outputs = [_ref(r, f"'graph.outputs[{i}]'", where)
               for i, r in enumerate(_list(g["outputs"], "'graph.outputs'", where, 1, MAX_GRAPH_IO))]
    for i, r in enumerate(outputs):
        resolve(r, f"'graph.outputs[{i}]'")
    names = _list(g["output_names"], "'graph.output_names'", where, len(outputs), len(outputs))
    names = [_name(n, f"'graph.output_names[{i}]'", where) for i, n in enumerate(names)]
    if len(set(names)) != len(names):
        raise _fail(where, f"'graph.output_names' repeats a name: {names[:8]}")
    return {"inputs": inputs, "layers": layers, "outputs": outputs, "output_names": names, "order": order}
