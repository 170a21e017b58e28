"""ONNX export: a built model as an ONNX graph that ONNX Runtime runs with `predict`'s results.

One converter per layer class (`_CONVERTERS`, keyed by the exact class: a subclass may change
the forward, so it needs a converter of its own); anything without one is refused with an error
naming the layer and its class. Containers are walked: a Chain or Sequential in order, a
Residual as block + shortcut and an Add, a functional gpunn.Model through its graph (each call of
a shared layer reads the same initializers). A subclassed model's `call` is Python and cannot be
traced statically: it is refused, and the error says to export a functional or Sequential twin.

Every converter emits the inference-mode forward of its layer, in the layer's own arithmetic:
BatchNorm from its running statistics (or from the batch when it tracks none, as its forward
does), LayerNorm / GroupNorm / InstanceNorm by their formulas, WeightNorm with its effective
weight g * v / ||v||, Dropout as the identity. channels_last layers transpose to NCHW and back
around the NCHW op, exactly as they hand the backend NCHW views. The batch axis is dynamic
("N"). The file is checked with onnx.checker.check_model(full_check=True) before it is written.

The `onnx` package is an optional extra (pip install "gpunn[onnx]"), imported when exporting.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gpunn._checks import is_int
from gpunn.backend import to_host
from gpunn.io.atomic import atomic_write, file_path
from gpunn.layers.activations import (ELU, GELU, SELU, CReLU, LeakyReLU, Linear, LogSoftmax, PReLU, ReLU, ReLU6,
                                      Sigmoid, SiLU, Softmax, Softplus, Softsign, Tanh)
from gpunn.layers.base import Layer
from gpunn.layers.container import Chain
from gpunn.layers.conv import Conv2D
from gpunn.layers.data_format import CHANNELS_FIRST, CHANNELS_LAST
from gpunn.layers.dense import Dense
from gpunn.layers.dropout import Dropout
from gpunn.layers.maxout import Maxout
from gpunn.layers.merge import Add, Average, Concatenate, Maximum, Multiply, Subtract
from gpunn.layers.normalization import BatchNorm, BatchNormalization, GroupNorm, InstanceNorm, LayerNorm
from gpunn.layers.pooling import AvgPool2D, GlobalAveragePooling2D, MaxPool2D
from gpunn.layers.reshape import Flatten
from gpunn.layers.residual import Residual, _BasicShortcut
from gpunn.layers.weight_norm import WeightNorm

#: the opsets the converters are written for: Softmax's single-axis meaning starts at 13; 21 is
#: the newest one the tests run through ONNX Runtime (1.32 here)
MIN_OPSET = 13
MAX_OPSET = 21
DEFAULT_OPSET = 17
#: the oldest IR version each opset needs, so that older ONNX Runtime releases load the file
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


class OnnxExportError(ValueError):
    """A model that cannot be exported: a layer without a converter, a subclassed model, an unbuilt one."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError('export_onnx needs the onnx package: pip install "gpunn[onnx]"') from None
    return onnx


class _Graph:
    """The ONNX graph being built: nodes, initializers (each layer's parameters once), fresh names."""

    def __init__(self, onnx: Any, dtype: np.dtype, opset: int) -> None:
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._params: dict[tuple[int, str], str] = {}
        self._overrides: dict[tuple[int, str], np.ndarray] = {}
        self._taken: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c in "_./" else "_" for c in hint) or "t"
        name, k = base, 0
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def const(self, value: Any, hint: str, dtype: Any = None) -> str:
        """A new initializer holding `value` (in the model's dtype unless `dtype` is given)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values: Any, hint: str) -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def param(self, layer: Layer, key: str, reshape: tuple[int, ...] | None = None) -> str:
        """The initializer of `layer`'s parameter or buffer `key` (optionally reshaped), made once per
        layer: a layer called at several places reads the same one."""
        cache = (id(layer), key if reshape is None else f"{key}{reshape}")
        if cache not in self._params:
            if (id(layer), key) in self._overrides:
                array = self._overrides[(id(layer), key)]
            else:
                source = layer.params[key].data if key in layer.params else layer.buffers[key]
                array = np.asarray(to_host(source))
            if reshape is not None:
                array = array.reshape(reshape)
            self._params[cache] = self.const(array, f"{layer.name}.{key}")
        return self._params[cache]

    def override(self, layer: Layer, key: str, value: np.ndarray) -> None:
        self._overrides[(id(layer), key)] = value

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=self.fresh(f"{hint}/{op}"), **attrs))
        return out

    def reduce(self, op: str, x: str, axes: list[int], hint: str, keepdims: int = 1) -> str:
        """ReduceMean / ReduceMax over `axes`: an attribute before opset 18, an input from 18 on."""
        if self.opset >= 18:
            return self.node(op, [x, self.ints(axes, f"{hint}.axes")], hint, keepdims=keepdims)
        return self.node(op, [x], hint, axes=axes, keepdims=keepdims)


Converter = Callable[[_Graph, Any, list[str]], str]
_CONVERTERS: dict[type, Converter] = {}


def _converts(*classes: type) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for cls in classes:
            _CONVERTERS[cls] = fn
        return fn
    return register


def convertible_classes() -> frozenset[type]:
    """The layer classes export_onnx has a converter for (containers and functional models are walked)."""
    return frozenset(_CONVERTERS) | {Chain}


def _is_model(layer: Any) -> bool:
    return bool(getattr(type(layer), "_gpunn_model", False))


def _refuse_subclassed(layer: Any) -> None:
    if _is_model(layer) and getattr(layer, "_graph", None) is None:
        raise OnnxExportError(f"export_onnx: layer {layer.name!r} ({type(layer).__name__}) is a subclassed "
                              "gpunn.Model: its call() is Python code, which cannot be traced into a static "
                              "graph; export a functional (gpunn.Model(inputs, outputs)) or gpunn.Sequential twin "
                              "holding the same layers instead")


def _emit(g: _Graph, layer: Any, xs: list[str]) -> str:
    """The output of `layer` called on the tensors `xs` (one, or a merge layer's list)."""
    if _is_model(layer):
        _refuse_subclassed(layer)
        outs = _emit_graph(g, layer, xs)
        if len(outs) != 1:
            raise OnnxExportError(f"export_onnx: layer {layer.name!r} ({type(layer).__name__}), a model with "
                                  f"{len(outs)} outputs, is used as one layer of another model; only a model with "
                                  "one output can be")
        return outs[0]
    converter = _CONVERTERS.get(type(layer))
    if converter is None and isinstance(layer, Chain) and type(layer).forward is Chain.forward:
        converter = _chain  # Sequential, or a Chain subclass that keeps Chain's forward
    if converter is None:
        raise OnnxExportError(f"export_onnx: layer {getattr(layer, 'name', '?')!r} of class "
                              f"{type(layer).__module__}.{type(layer).__qualname__} has no ONNX converter; the "
                              f"classes that export are {sorted(c.__name__ for c in convertible_classes())}")
    return converter(g, layer, xs)


def _emit_graph(g: _Graph, model: Any, xs: list[str]) -> list[str]:
    """A functional model's calls, in the graph's order, on the tensors `xs` (its inputs in order)."""
    graph = model._graph
    # refs are [layer key or input name, call number, 0] (graph.ref); the keys never repeat an input's name
    values: dict[tuple[str, int], str] = {(name, 0): x for name, x in zip(graph.input_names, xs)}
    calls: dict[str, int] = {}
    for key, layer, _shape, inbound in graph.calls_with_shapes():
        index = calls.get(key, 0)
        calls[key] = index + 1
        values[(key, index)] = _emit(g, layer, [values[(r[0], r[1])] for r in inbound])
    return [values[tuple(graph.ref(t)[:2])] for t in graph.outputs]


def _one(layer: Any, xs: list[str]) -> str:
    if len(xs) != 1:
        raise OnnxExportError(f"export_onnx: layer {layer.name!r} ({type(layer).__name__}) takes one input, "
                              f"got {len(xs)}")
    return xs[0]


def _activation(g: _Graph, layer: Any, y: str) -> str:
    act = layer.children.get("activation")
    return _emit(g, act, [y]) if act is not None else y


def _to_first(g: _Graph, x: str, rank: int, hint: str) -> str:
    """(N, ..., C) -> (N, C, ...), as gpunn.layers.data_format.to_channels_first."""
    return g.node("Transpose", [x], hint, perm=[0, rank - 1, *range(1, rank - 1)]) if rank > 2 else x


def _to_last(g: _Graph, x: str, rank: int, hint: str) -> str:
    return g.node("Transpose", [x], hint, perm=[0, *range(2, rank), 1]) if rank > 2 else x


def _rank(layer: Any) -> int:
    """The rank of the layer's input, with the batch axis."""
    return len(layer.input_shape) + 1


# -- containers --------------------------------------------------------------------------------------
def _chain(g: _Graph, layer: Chain, xs: list[str]) -> str:
    x = _one(layer, xs)
    for sub in layer.layers:
        x = _emit(g, sub, [x])
    return x


_CONVERTERS[Chain] = _chain


@_converts(Residual)
def _residual(g: _Graph, layer: Residual, xs: list[str]) -> str:
    x = _one(layer, xs)
    y = _emit(g, layer.block, [x])
    s = _emit(g, layer.shortcut, [x]) if layer.shortcut is not None else x
    return g.node("Add", [y, s], layer.name)


@_converts(_BasicShortcut)
def _basic_shortcut(g: _Graph, layer: _BasicShortcut, xs: list[str]) -> str:
    x = _one(layer, xs)
    return x if layer._identity else _emit(g, layer.children["projection"], [x])


# -- weight layers -----------------------------------------------------------------------------------
@_converts(Dense)
def _dense(g: _Graph, layer: Dense, xs: list[str]) -> str:
    y = g.node("MatMul", [_one(layer, xs), g.param(layer, "weight")], layer.name)
    if layer.use_bias:
        y = g.node("Add", [y, g.param(layer, "bias")], layer.name)
    return _activation(g, layer, y)


@_converts(Conv2D)
def _conv(g: _Graph, layer: Conv2D, xs: list[str]) -> str:
    last = layer.data_format == CHANNELS_LAST
    x = _one(layer, xs)
    if last:
        x = _to_first(g, x, 4, layer.name)
    inputs = [x, g.param(layer, "weight")] + ([g.param(layer, "bias")] if layer.use_bias else [])
    (ph, pw) = layer.padding
    y = g.node("Conv", inputs, layer.name, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
               pads=[ph, pw, ph, pw], dilations=list(layer.dilation))
    y = _activation(g, layer, y)  # on NCHW in both layouts, as Conv2D.forward applies it
    return _to_last(g, y, 4, layer.name) if last else y


@_converts(Maxout)
def _maxout(g: _Graph, layer: Maxout, xs: list[str]) -> str:
    z = g.node("MatMul", [_one(layer, xs), g.param(layer, "weight")], layer.name)
    z = g.node("Add", [z, g.param(layer, "bias")], layer.name)
    lead = list(layer.input_shape[:-1])
    z = g.node("Reshape", [z, g.ints([-1, *lead, layer.units, layer.pieces], f"{layer.name}.shape")], layer.name)
    return g.reduce("ReduceMax", z, [-1], layer.name, keepdims=0)


@_converts(WeightNorm)
def _weight_norm(g: _Graph, layer: WeightNorm, xs: list[str]) -> str:
    inner = layer.layer
    v = np.asarray(to_host(layer.params["v"].data))
    gain = np.asarray(to_host(layer.params["g"].data))
    norm = np.sqrt((v * v).sum(axis=layer._norm_axes, keepdims=True))
    if bool((norm == 0).any()):
        raise OnnxExportError(f"export_onnx: layer {layer.name!r} (WeightNorm): a row of parameter 'v' has zero "
                              "norm; g * v / ||v|| is undefined")
    shaped = gain.reshape(1, -1) if layer._norm_axes == (0,) else gain.reshape(-1, 1, 1, 1)
    g.override(inner, "weight", (shaped * v / norm).astype(v.dtype, copy=False))
    return _emit(g, inner, xs)


# -- activations -------------------------------------------------------------------------------------
def _unary(op: str, **attrs: Any) -> Converter:
    def convert(g: _Graph, layer: Any, xs: list[str]) -> str:
        return g.node(op, [_one(layer, xs)], layer.name, **attrs)
    return convert


for _cls, _op in ((ReLU, "Relu"), (Sigmoid, "Sigmoid"), (Tanh, "Tanh"), (Softsign, "Softsign"),
                  (Linear, "Identity"), (Dropout, "Identity")):
    _CONVERTERS[_cls] = _unary(_op)


@_converts(Softmax, LogSoftmax)
def _softmax(g: _Graph, layer: Softmax, xs: list[str]) -> str:
    op = "LogSoftmax" if isinstance(layer, LogSoftmax) else "Softmax"
    return g.node(op, [_one(layer, xs)], layer.name, axis=int(layer.axis))


@_converts(LeakyReLU)
def _leaky(g: _Graph, layer: LeakyReLU, xs: list[str]) -> str:
    return g.node("LeakyRelu", [_one(layer, xs)], layer.name, alpha=float(layer.alpha))


@_converts(ELU)
def _elu(g: _Graph, layer: ELU, xs: list[str]) -> str:
    return g.node("Elu", [_one(layer, xs)], layer.name, alpha=float(layer.alpha))


@_converts(SELU)
def _selu(g: _Graph, layer: SELU, xs: list[str]) -> str:
    return g.node("Selu", [_one(layer, xs)], layer.name, alpha=float(layer.ALPHA), gamma=float(layer.SCALE))


@_converts(ReLU6)
def _relu6(g: _Graph, layer: ReLU6, xs: list[str]) -> str:
    return g.node("Clip", [_one(layer, xs), g.const(0.0, f"{layer.name}.min"), g.const(6.0, f"{layer.name}.max")],
                  layer.name)


@_converts(CReLU)
def _crelu(g: _Graph, layer: CReLU, xs: list[str]) -> str:
    x = _one(layer, xs)
    pos = g.node("Relu", [x], layer.name)
    neg = g.node("Relu", [g.node("Neg", [x], layer.name)], layer.name)
    return g.node("Concat", [pos, neg], layer.name, axis=1)


@_converts(Softplus)
def _softplus(g: _Graph, layer: Softplus, xs: list[str]) -> str:
    # max(x, 0) + log(1 + exp(-|x|)), Softplus.forward's overflow-free form (ONNX has no log1p)
    x = _one(layer, xs)
    e = g.node("Exp", [g.node("Neg", [g.node("Abs", [x], layer.name)], layer.name)], layer.name)
    tail = g.node("Log", [g.node("Add", [e, g.const(1.0, f"{layer.name}.one")], layer.name)], layer.name)
    return g.node("Add", [g.node("Relu", [x], layer.name), tail], layer.name)


@_converts(GELU)
def _gelu(g: _Graph, layer: GELU, xs: list[str]) -> str:
    x = _one(layer, xs)
    half = g.node("Mul", [x, g.const(0.5, f"{layer.name}.half")], layer.name)
    one = g.const(1.0, f"{layer.name}.one")
    if layer.approximate == "tanh":
        x3 = g.node("Mul", [g.node("Mul", [x, x], layer.name), x], layer.name)
        inner = g.node("Add", [x, g.node("Mul", [x3, g.const(GELU._K, f"{layer.name}.k")], layer.name)], layer.name)
        t = g.node("Tanh", [g.node("Mul", [inner, g.const(GELU._C, f"{layer.name}.c")], layer.name)], layer.name)
    else:
        t = g.node("Erf", [g.node("Mul", [x, g.const(1.0 / math.sqrt(2.0), f"{layer.name}.rsqrt2")], layer.name)],
                   layer.name)
    return g.node("Mul", [half, g.node("Add", [t, one], layer.name)], layer.name)


@_converts(SiLU)
def _silu(g: _Graph, layer: SiLU, xs: list[str]) -> str:
    x = _one(layer, xs)
    return g.node("Mul", [x, g.node("Sigmoid", [x], layer.name)], layer.name)


@_converts(PReLU)
def _prelu(g: _Graph, layer: PReLU, xs: list[str]) -> str:
    if "alpha" not in layer.params:
        # a Dense's or Conv2D's activation= is built by the first forward, not by the model's build
        raise OnnxExportError(f"export_onnx: layer {layer.name!r} (PReLU) is not built yet: run model.predict on "
                              "one batch first, which builds it")
    rank = _rank(layer)
    shape = (1,) if layer.shared else (layer.params["alpha"].data.shape[0],) + (1,) * (rank - 2)
    return g.node("PRelu", [_one(layer, xs), g.param(layer, "alpha", reshape=shape)], layer.name)


# -- pooling, reshaping ------------------------------------------------------------------------------
@_converts(MaxPool2D, AvgPool2D)
def _pool(g: _Graph, layer: Any, xs: list[str]) -> str:
    last = layer.data_format == CHANNELS_LAST
    x = _one(layer, xs)
    if last:
        x = _to_first(g, x, 4, layer.name)
    ph, pw = layer.padding
    attrs: dict[str, Any] = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
                             "pads": [ph, pw, ph, pw]}
    if isinstance(layer, AvgPool2D):
        attrs["count_include_pad"] = 1  # gpunn's mean divides by the whole window, padding included
        y = g.node("AveragePool", [x], layer.name, **attrs)
    else:
        y = g.node("MaxPool", [x], layer.name, **attrs)  # padding never wins: both pad with -inf
    return _to_last(g, y, 4, layer.name) if last else y


@_converts(GlobalAveragePooling2D)
def _gap(g: _Graph, layer: GlobalAveragePooling2D, xs: list[str]) -> str:
    last = layer.data_format == CHANNELS_LAST
    x = _one(layer, xs)
    if last:
        x = _to_first(g, x, 4, layer.name)
    y = g.node("GlobalAveragePool", [x], layer.name)
    if not layer.keepdims:
        return g.node("Flatten", [y], layer.name, axis=1)
    return _to_last(g, y, 4, layer.name) if last else y


@_converts(Flatten)
def _flatten(g: _Graph, layer: Flatten, xs: list[str]) -> str:
    x = _one(layer, xs)
    rank = _rank(layer)
    if layer.data_format == CHANNELS_FIRST and rank > 2:
        x = _to_last(g, x, rank, layer.name)  # Keras's channels_first Flatten reads (H, W, C) order
    return g.node("Flatten", [x], layer.name, axis=1)


# -- normalization -----------------------------------------------------------------------------------
def _normalize(g: _Graph, x: str, axes: list[int], eps: float, hint: str) -> str:
    """(x - mean) / sqrt(biased var + eps) over `axes`, as normalization._normalize computes it."""
    mean = g.reduce("ReduceMean", x, axes, hint)
    centered = g.node("Sub", [x, mean], hint)
    var = g.reduce("ReduceMean", g.node("Mul", [centered, centered], hint), axes, hint)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(eps, f"{hint}.eps")], hint)], hint)
    invstd = g.node("Div", [g.const(1.0, f"{hint}.one"), std], hint)
    return g.node("Mul", [centered, invstd], hint)


def _affine(g: _Graph, layer: Any, y: str, shape: tuple[int, ...] | None) -> str:
    if not layer.affine:
        return y
    y = g.node("Mul", [y, g.param(layer, "gamma", reshape=shape)], layer.name)
    return g.node("Add", [y, g.param(layer, "beta", reshape=shape)], layer.name)


@_converts(BatchNorm, BatchNormalization)
def _batchnorm(g: _Graph, layer: BatchNorm, xs: list[str]) -> str:
    rank = _rank(layer)
    last = layer.data_format == CHANNELS_LAST
    x = _one(layer, xs)
    if last:
        x = _to_first(g, x, rank, layer.name)
    c = layer.num_features
    if layer.track_running_stats:
        ones, zeros = np.ones(c), np.zeros(c)
        gamma = g.param(layer, "gamma") if layer.affine else g.const(ones, f"{layer.name}.gamma")
        beta = g.param(layer, "beta") if layer.affine else g.const(zeros, f"{layer.name}.beta")
        y = g.node("BatchNormalization", [x, gamma, beta, g.param(layer, "running_mean"),
                                          g.param(layer, "running_var")], layer.name, epsilon=float(layer.eps))
    else:
        # no running statistics: inference normalizes with the batch's own, as BatchNorm.forward does
        y = _normalize(g, x, [0, *range(2, rank)], layer.eps, layer.name)
        y = _affine(g, layer, y, (1, c) + (1,) * (rank - 2))
    return _to_last(g, y, rank, layer.name) if last else y


@_converts(LayerNorm)
def _layernorm(g: _Graph, layer: LayerNorm, xs: list[str]) -> str:
    rank = _rank(layer)
    axes = list(range(rank - layer.normalized_ndim, rank))
    y = _normalize(g, _one(layer, xs), axes, layer.eps, layer.name)
    return _affine(g, layer, y, None)


@_converts(GroupNorm, InstanceNorm)
def _groupnorm(g: _Graph, layer: GroupNorm, xs: list[str]) -> str:
    rank = _rank(layer)
    last = layer.data_format == CHANNELS_LAST
    x = _one(layer, xs)
    if last:
        x = _to_first(g, x, rank, layer.name)
    c = layer.input_shape[layer._axis]
    groups = layer._groups_for(c)
    shape = g.node("Shape", [x], layer.name)
    grouped = g.node("Reshape", [x, g.ints([0, groups, -1], f"{layer.name}.groups")], layer.name)
    y = g.node("Reshape", [_normalize(g, grouped, [-1], layer.eps, layer.name), shape], layer.name)
    y = _affine(g, layer, y, (1, c) + (1,) * (rank - 2))
    return _to_last(g, y, rank, layer.name) if last else y


# -- merges ------------------------------------------------------------------------------------------
def _fold(op: str) -> Converter:
    """An elementwise merge folded left over its inputs, ((a op b) op c) ..., as the layer computes it."""
    def convert(g: _Graph, layer: Any, xs: list[str]) -> str:
        y = g.node(op, [xs[0], xs[1]], layer.name)
        for x in xs[2:]:
            y = g.node(op, [y, x], layer.name)
        return y
    return convert


_CONVERTERS[Add] = _fold("Add")
_CONVERTERS[Subtract] = _fold("Sub")
_CONVERTERS[Multiply] = _fold("Mul")
_CONVERTERS[Maximum] = _fold("Max")


@_converts(Average)
def _average(g: _Graph, layer: Average, xs: list[str]) -> str:
    total = _fold("Add")(g, layer, xs)
    return g.node("Mul", [total, g.const(1.0 / len(xs), f"{layer.name}.scale")], layer.name)


@_converts(Concatenate)
def _concatenate(g: _Graph, layer: Concatenate, xs: list[str]) -> str:
    return g.node("Concat", xs, layer.name, axis=int(layer.axis))


# -- the model ---------------------------------------------------------------------------------------
def _model_dtype(model: Any) -> np.dtype:
    for p in model.parameters():
        return np.dtype(p.data.dtype)
    return np.dtype(getattr(model, "dtype", None) or np.float32)


def _opset_arg(opset: Any, where: str) -> int:
    if not is_int(opset) or not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"{where}: argument 'opset' must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")
    return int(opset)


def _path_arg(path: Any, where: str) -> Path:
    p = file_path(path, where)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{where}: the folder {str(parent)!r} of argument 'path' does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{where}: argument 'path' {str(p)!r} is a folder, not a file")
    return p


def to_onnx(model: Any, opset: int = DEFAULT_OPSET) -> Any:
    """The onnx.ModelProto of a built gpunn model (a Sequential, a Chain, a functional gpunn.Model),
    in inference mode, with a dynamic batch axis "N", checked with check_model(full_check=True)."""
    where = "export_onnx"
    opset = _opset_arg(opset, where)
    if not isinstance(model, Layer):
        raise TypeError(f"{where}: argument 'model' must be a gpunn model or layer, got {type(model).__name__}")
    _refuse_subclassed(model)
    if not model.built or model.input_shape is None:
        raise OnnxExportError(f"{where}: model {model.name!r} is not built: call model.build(input_shape) or "
                              "predict on a batch first, so its input shape and weights exist")
    dtype = _model_dtype(model)
    if dtype != np.float32:
        raise OnnxExportError(f"{where}: model {model.name!r} computes in {dtype}; only float32 models export "
                              "(ONNX Runtime's CPU convolutions and pools run float32): model.to_dtype('float32') "
                              "first")
    onnx = _onnx()
    helper = onnx.helper
    g = _Graph(onnx, dtype, opset)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = getattr(model, "_graph", None)
    if graph is not None:
        in_names = list(graph.input_names)
        in_shapes = [tuple(t.shape) for t in graph.inputs]
        out_names = list(graph.output_names)
        out_shapes = [tuple(t.shape) for t in graph.outputs]
    else:
        in_names, in_shapes = ["input"], [tuple(model.input_shape)]
        out_names, out_shapes = ["output"], [tuple(model.output_shape)]
    for name in in_names:
        g._taken.add(name)
    for name in out_names:
        if name in g._taken:
            raise OnnxExportError(f"{where}: output name {name!r} is also an input's name; ONNX needs distinct names")
        g._taken.add(name)
    outs = _emit_graph(g, model, in_names) if graph is not None else [_emit(g, model, in_names)]
    for name, value in zip(out_names, outs):
        g.nodes.append(helper.make_node("Identity", [value], [name], name=g.fresh(f"{name}/Identity")))
    inputs = [helper.make_tensor_value_info(n, elem, ["N", *s]) for n, s in zip(in_names, in_shapes)]
    outputs = [helper.make_tensor_value_info(n, elem, ["N", *s]) for n, s in zip(out_names, out_shapes)]
    proto = helper.make_model(helper.make_graph(g.nodes, str(model.name), inputs, outputs, g.initializers),
                              opset_imports=[helper.make_opsetid("", opset)], producer_name="gpunn")
    proto.ir_version = min(proto.ir_version, _IR_FOR_OPSET.get(opset, proto.ir_version))
    onnx.checker.check_model(proto, full_check=True)
    return proto



def export_onnx(model: Any, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` (built, float32) to `path` as an ONNX file (atomically); returns the path.

    ONNX Runtime reproduces model.predict on it: see the module docstring for what each layer becomes."""
    where = "export_onnx"
    p = _path_arg(path, where)
    proto = to_onnx(model, opset)
    atomic_write(p, proto.SerializeToString())
    return p
