"""Model: models beyond a chain, Keras's functional API and PyTorch-style subclassing in one class.

Functional (a DAG of layer calls, gpunn/train/functional.py):

    image = gpunn.Input(shape=(1, 28, 28), name="image")
    h = Flatten()(image)
    logits = Dense(10, name="logits")(Dense(64, activation="relu")(h))
    model = gpunn.Model(inputs=image, outputs=logits, name="mlp")

Subclassed (layers as attributes, composed in `call` with Python control flow, a tape of the
layer calls for backward, gpunn/train/subclassed.py):

    class Net(gpunn.Model):
        def __init__(self, hidden=32):
            super().__init__()
            self.hidden = hidden
            self.body = Dense(hidden, activation="relu")
            self.head = Dense(2)

        def call(self, x, training=False):
            return self.head(self.body(x))

Both are full models (gpunn.train.model.TrainingMixin): compile / fit / evaluate / predict, save
and load, to(), freezing, summary(). Several inputs and outputs are given as lists, or dicts keyed
by the input names (gpunn.Input's name=) and the output names (`model.output_names`).

Placement: a Model runs on its own backend (current at construction, or given to to()), and so
do its layers: one built on another backend is moved onto it when the model takes it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import name_arg
from gpunn.io.registry import register_builtin
from gpunn.layers.base import Layer, on_backend
from gpunn.train.functional import Graph, GraphError
from gpunn.train.model import TrainingMixin, summary_table
from gpunn.train.subclassed import TapeRun, backward_on_tape, forward_on_tape, track


def _default_config(fn: Any) -> Any:
    fn._gpunn_model_default = True  # gpunn.io: a subclass that did not define its own get_config
    return fn


class Model(TrainingMixin, Layer):
    """A model over a graph of layer calls (`Model(inputs=..., outputs=..., name=...)`), or the
    base of a subclass that defines `call(self, x, training=False)` (see the module docstring)."""

    #: what gpunn.io reads: a Model is a functional graph (`_graph`) or a subclass with a tape
    _gpunn_model = True
    _graph: Graph | None = None
    _run: TapeRun | None = None

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None) -> None:
        where = "Model"
        object.__setattr__(self, "_graph", None)
        Layer.__init__(self, name=type(self).__name__ if name is None else name_arg(name, "name", where))
        self._calls: Any = None
        self._run = None
        self._out_meta: list[tuple[tuple[int, ...], Any]] | None = None
        self._in_meta: Any = None
        if inputs is None and outputs is None:
            if type(self).call is Model.call:
                raise TypeError(f"{where}: give inputs= and outputs= (symbolic tensors from gpunn.Input and layer "
                                "calls: the functional API), or subclass Model and define "
                                "call(self, x, training=False)")
            return
        if inputs is None or outputs is None:
            raise TypeError(f"{where}: give both inputs= and outputs= for a functional model, got only "
                            f"{'inputs' if outputs is None else 'outputs'}")
        if type(self).call is not Model.call:
            raise TypeError(f"{where}: {type(self).__name__} defines call() and was also given inputs/outputs; a "
                            "model is either a graph (inputs=, outputs=) or a subclass with call()")
        try:
            graph = Graph(inputs, outputs, where)
        except GraphError as exc:
            raise ValueError(str(exc)) from None
        object.__setattr__(self, "_graph", graph)
        for key, layer in graph.layers.items():
            self.children[key] = self._adopt(layer)
        in_shapes = [t.shape for t in graph.inputs]
        out_shapes = [t.shape for t in graph.outputs]
        self.input_shape = in_shapes[0] if len(in_shapes) == 1 else tuple(in_shapes)
        self.output_shape = out_shapes[0] if len(out_shapes) == 1 else tuple(out_shapes)
        self.built = True

    # -- subclassing ----------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if vars(self).get("_graph") is None:
            track(self, name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if vars(self).get("_graph") is None:
            track(self, name, None)
        object.__delattr__(self, name)

    def call(self, x: Any, training: bool = False) -> Any:
        """The forward computation of a subclass, composed of layer calls; a functional model's
        is its graph."""
        raise NotImplementedError(f"{type(self).__name__}.call: a subclass of gpunn.Model defines call(self, x, "
                                  "training=False)")

    @property
    def multi_input(self) -> bool:  # type: ignore[override]
        """A functional model with several inputs is called on a list of them, like a merge layer."""
        return self._graph is not None and len(self._graph.inputs) > 1

    @property
    def is_subclassed(self) -> bool:
        """Whether this model is a subclass composing layers in call() (not a functional graph)."""
        return self._graph is None

    @property
    def layers(self) -> list[Layer]:
        """The distinct layers, in graph order (functional) or in assignment order (subclassed)."""
        return list(self.children.values())

    # -- names ----------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str] | None:
        """The names of the inputs (functional: from gpunn.Input; subclassed: the keys of a dict
        given to the last forward), or None for a subclass called on arrays."""
        if self._graph is not None:
            return list(self._graph.input_names)
        run = self._run
        return list(run.input_keys) if run is not None and isinstance(run.input_keys, dict) else None

    @property
    def output_names(self) -> list[str] | None:
        """The names of the outputs, which key losses, metrics and logs ("<name>_loss"); a
        subclass's are output_1, output_2, ... once it has run a forward (None before)."""
        if self._graph is not None:
            return list(self._graph.output_names)
        run = self._run
        if run is None:
            return None
        return [f"output_{i + 1}" for i in range(len(run.output_keys))]

    def _input_count(self) -> int | None:
        return len(self._graph.inputs) if self._graph is not None else None

    def _output_layers(self) -> list[Any] | None:
        """The layer producing each output (None for an output that is an input)."""
        if self._graph is not None:
            return [self._graph.output_layer(i) for i in range(len(self._graph.outputs))]
        return list(self._run.output_layers) if self._run is not None else None

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer under `name` (its key in this model, which is its own name unless another layer
        has it too, then name_1, ...; or its name when that is unique), or at position `index`."""
        where = "get_layer"
        if (name is None) == (index is None):
            raise ValueError(f"{where}: give exactly one of 'name' and 'index'")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                    not -len(layers) <= index < len(layers):
                raise ValueError(f"{where}: argument 'index' must be an int in [{-len(layers)}, {len(layers) - 1}], "
                                 f"got {index!r}")
            return layers[int(index)]
        if not isinstance(name, str):
            raise TypeError(f"{where}: argument 'name' must be a str, got {type(name).__name__}")
        if name in self.children:
            return self.children[name]
        matches = [layer for layer in layers if layer.name == name]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(f"{where}: argument 'name'={name!r} names {len(matches)} layers of {self.name!r}; its layers "
                         f"are {list(self.children)}")

    def _layer_index(self, ref: Any, name: str, where: str) -> int:
        if isinstance(ref, str) and ref in self.children:
            return list(self.children).index(ref)
        return super()._layer_index(ref, name, where)

    def pop(self) -> Any:
        raise TypeError(f"pop: {type(self).__name__} is a graph of layers, not a stack; build a new Model from the "
                        "layer outputs you want (model.get_layer(name) gives the layers)")

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """A functional model is built by its graph. A subclass is built by one inference
        forward on a zero sample of `input_shape` (a tuple of shapes for several inputs), which
        builds every layer that call() reaches."""
        if self._graph is not None:
            return
        shapes = input_shape
        several = isinstance(shapes, (list, tuple)) and shapes and all(isinstance(s, (list, tuple)) for s in shapes)
        dtype = self.dtype
        xp = self.backend.xp
        x = [xp.zeros((1, *s), dtype=dtype) for s in shapes] if several else xp.zeros((1, *shapes), dtype=dtype)
        out = self.forward(x, training=False)
        self.output_shape = tuple(out.shape[1:]) if hasattr(out, "shape") else tuple(tuple(o.shape[1:]) for o in out)

    def check_built_shape(self, shape: Any, where: str) -> None:
        if self._graph is not None and len(self._graph.inputs) == 1 and tuple(shape) != self._graph.inputs[0].shape:
            raise ValueError(f"{where}: argument 'x' must have per-sample shape {self._graph.inputs[0].shape}, got "
                             f"{tuple(shape)}")

    # -- computing ------------------------------------------------------------------------------
    def _graph_inputs(self, x: Any, where: str) -> list[Any]:
        """The input arrays in the graph's input order, from one array, a list or tuple, or a dict
        keyed by the input names; each checked against its Input's shape."""
        graph = self._graph
        names = graph.input_names
        n = len(names)
        if isinstance(x, dict):
            missing = [k for k in names if k not in x]
            unknown = [k for k in x if k not in names]
            if missing or unknown:
                raise ValueError(f"{where}: argument 'x' is a dict whose keys must be the input names {names}; "
                                 f"missing {missing}, unknown {unknown}")
            xs = [x[k] for k in names]
        elif isinstance(x, (list, tuple)) and (n > 1 or (len(x) == 1 and hasattr(x[0], "shape"))):
            if len(x) != n:
                raise ValueError(f"{where}: argument 'x' must hold {n} arrays, one per input {names}, got {len(x)}")
            xs = list(x)
        elif n == 1:
            xs = [x]
        else:
            raise TypeError(f"{where}: the model has {n} inputs {names}; pass a list of {n} arrays or a dict keyed "
                            f"by their names, got {type(x).__name__}")
        for name, a, t in zip(names, xs, graph.inputs):
            shape = getattr(a, "shape", None)
            if shape is None:
                raise TypeError(f"{where}: input {name!r} must be an array, got {type(a).__name__}")
            if len(shape) == 0 or tuple(shape[1:]) != t.shape:
                raise ValueError(f"{where}: input {name!r} must have shape (N, {', '.join(map(str, t.shape))}), got "
                                 f"{tuple(shape)}")
        sizes = {int(a.shape[0]) for a in xs}
        if len(sizes) > 1:
            raise ValueError(f"{where}: the inputs must have one batch size, got {[int(a.shape[0]) for a in xs]}")
        return xs

    def forward(self, x: Any, training: bool = False) -> Any:
        """The outputs for `x`: one array for one output, a list for several."""
        where = f"{self.name}.forward"
        if self._graph is not None:
            xs = self._graph_inputs(x, where)
            outs, calls = self._graph.run(xs, training)
            self._calls = calls
            self._in_meta = [tuple(a.shape) for a in xs]
            self._out_meta = [(tuple(o.shape), o.dtype) for o in outs]
            return outs[0] if len(outs) == 1 else outs
        out, run = forward_on_tape(self, x, training)
        self._run = run
        outs = list(out) if run.several else [out]
        self._out_meta = [(tuple(o.shape), o.dtype) for o in outs]
        self._in_meta = _shapes(x)
        if not self.built:
            self.built = True
            self.input_shape = run.input_shapes
            self.output_shape = self._out_meta[0][0][1:] if not run.several else \
                tuple(m[0][1:] for m in self._out_meta)
        return out

    def _output_grads(self, dy: Any, where: str) -> list[Any]:
        meta = self._out_meta
        if meta is None:
            raise RuntimeError(f"{where}: called before forward(); run forward first")
        if len(meta) == 1:
            dys = [dy]
        else:
            if not isinstance(dy, (list, tuple)) or len(dy) != len(meta):
                raise ValueError(f"{where}: argument 'dy' must be a list of {len(meta)} gradients, one per output, got "
                                 f"{type(dy).__name__}")
            dys = list(dy)
        out = []
        for i, (g, (shape, dtype)) in enumerate(zip(dys, meta)):
            if g is None:
                out.append(None)
                continue
            if tuple(getattr(g, "shape", ())) != shape:
                raise ValueError(f"{where}: argument 'dy' for output {i} must have the shape of that output {shape}, "
                                 f"got {tuple(getattr(g, 'shape', ()))}")
            out.append(on_backend(self.backend, g, dtype))
        return out

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        """Backpropagate the gradients of the outputs (one array, or a list for several; None for
        an output that reaches no loss) through every layer call of the last forward, in
        reverse. Returns the gradient of the input (a list or dict for several, as given).

        need_input_grad=False (the training loop) skips the input gradients where the layers can;
        the result is then None."""
        where = f"{self.name}.backward"
        dys = self._output_grads(dy, where)
        if self._graph is not None:
            calls = self._calls
            if calls is None:
                raise RuntimeError(f"{where}: called before forward(); run forward first")
            grads = self._graph.backward(calls, dys, need_input_grad)
            if not need_input_grad:
                return None
            grads = [g if g is not None else self.backend.xp.zeros(shape, dtype=self.dtype)
                     for g, shape in zip(grads, self._in_meta)]
            return grads[0] if len(grads) == 1 else grads
        run = self._run
        if run is None:
            raise RuntimeError(f"{where}: called before forward(); run forward first")
        grads = backward_on_tape(run, dys if run.several else dys[0], need_input_grad, where)
        if not need_input_grad:
            return None
        return _fill_zeros(grads, self._in_meta, self.backend.xp, self.dtype)

    # -- describing -----------------------------------------------------------------------------
    def summary(self, print_fn: Any = print) -> str:
        """A table of the layers: name (type), output shape, parameter count and, for a
        functional model, what each call is connected to ("dense[0][0]": the first call of layer
        dense), with the totals."""
        if not self.built:
            raise RuntimeError("summary: the model is not built; call it on data first (or build(input_shape))")
        rows: list[tuple[str, str, str, str]] = []
        graph = self._graph
        if graph is not None:
            for name, t in zip(graph.input_names, graph.inputs):
                rows.append((f"{name} (Input)", str(("N", *t.shape)), "0", ""))
            counted: set[str] = set()
            for key, layer, shape, refs in graph.calls_with_shapes():
                params = f"{layer.count_params():,}" if key not in counted else "(shared)"
                counted.add(key)
                links = ", ".join(f"{r[0]}[{r[1]}][{r[2]}]" for r in refs)
                rows.append((f"{key} ({type(layer).__name__})", str(("N", *shape)), params, links))
        else:
            for key, layer in self.children.items():
                shape = layer.output_shape
                shown = str(("N", *shape)) if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape) \
                    else "?"
                rows.append((f"{key} ({type(layer).__name__})", shown, f"{layer.count_params():,}", ""))
        return summary_table(self, ("Layer (type)", "Output shape", "Params", "Connected to"), rows, print_fn)

    @_default_config
    def get_config(self) -> dict[str, Any]:
        """A functional model's architecture: its graph (layers with their inbound calls, inputs,
        outputs) as JSON-able data, which gpunn.io.model_from_config rebuilds.

        A subclass defines its own get_config() returning its constructor's keyword arguments
        (and registers its class with gpunn.io.register_serializable) so that save / load_model
        can rebuild it; without one, save raises and save_weights still works."""
        if self._graph is None:
            raise NotImplementedError(f"{type(self).__name__}.get_config: a subclassed model defines get_config() "
                                      "returning its constructor's keyword arguments to be saved whole; or use "
                                      "save_weights / load_weights")
        return super().get_config()


def _shapes(x: Any) -> Any:
    """The full shapes of a structure of arrays, in the same structure."""
    if isinstance(x, dict):
        return {k: tuple(v.shape) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [tuple(v.shape) for v in x]
    return tuple(x.shape)


def _fill_zeros(grads: Any, shapes: Any, xp: Any, dtype: Any) -> Any:
    """`grads` with zeros (of the input's shape) for inputs no output depends on."""
    if isinstance(grads, dict):
        return {k: g if g is not None else xp.zeros(shapes[k], dtype=dtype) for k, g in grads.items()}
    if isinstance(grads, list):
        return [g if g is not None else xp.zeros(s, dtype=dtype) for g, s in zip(grads, shapes)]
    return grads if grads is not None else xp.zeros(shapes, dtype=dtype)


# checkpoints name it "Model": gpunn.io sits below this package and learns it from here
register_builtin(Model)
