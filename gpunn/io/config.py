"""Architectures (and losses, optimizers) to and from plain JSON-able configs.

A layer's config is read off its constructor: for each `__init__` argument we take the attribute of
the same name (or the child layer of that name), which is how every gpunn layer stores them. A
layer may instead define `get_config()` returning its constructor's keyword arguments (as in
Keras). Values are encoded with explicit markers so that tuples, nested layers and gpunn objects
(regularizers, constraints) come back as they went in.

A gpunn.Model adds what its constructor cannot say: a functional model its "graph" (each layer
once, with the tensors each of its calls read, as Keras's "inbound_nodes"; see graph_check.py), a
subclassed one its "subclassed" record (the input shape each layer was built for, so that loading
builds them without running call(); its "config" is what the class's own get_config() returns,
and the class must be registered).

Decoding treats the config as hostile:
- a class is looked up by its registered name only (gpunn.io.registry, or the caller's
  `custom_objects`), and must be of the kind the position asks for (a layer, a loss, ...);
- the config's keys are checked against the constructor's parameters before anything is built;
- nesting is capped, and rebuilding a model may allocate only a bounded number of elements;
- a graph is checked whole (types, sizes, references, cycles) before any of its layers is made,
  and the graph rebuilt must be the file's, call for call.
Every problem raises ConfigError (a ValueError) naming it, with no side effect.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any

import numpy as np

from gpunn.layers.base import AllocationBudgetError, Layer, allocation_budget
from gpunn.layers.data_format import CHANNELS_FIRST, use_image_data_format
from gpunn.layers.symbolic import Input
from gpunn.io import registry
from gpunn.io.graph_check import GraphConfigError, check_build_shapes, check_graph, check_shape_tree


class ConfigError(ValueError):
    """An object that cannot be described as a config, or a config that does not describe one."""


class _Unencodable(Exception):
    pass


MAX_DEPTH = 64  # nesting of config values; real architectures stay below 10
#: elements a model rebuilt from a bare config may allocate (8 GiB of float32); a checkpoint's
#: own tensors set a tighter bound when loading one
MAX_CONFIG_ELEMENTS = 2 ** 31
MODEL_DTYPES = ("float32", "float64")
_POSITIONAL_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_OBJECT_KINDS = ("regularizer", "constraint", "loss")  # what an {"__object__": ...} value may be
_VALUE_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


def _init_params(cls: type) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    return [p for p in list(sig.parameters.values())[1:] if p.kind not in _POSITIONAL_KINDS]


def _takes_any_keyword(cls: type) -> bool:
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    except (TypeError, ValueError):
        return False


def _lookup(obj: Any, name: str) -> tuple[bool, Any]:
    children = getattr(obj, "children", None)
    if name == "activation" and isinstance(children, dict):
        return True, children.get("activation")  # Dense/Conv2D keep their activation as a child
    if hasattr(type(obj), name) or name in getattr(obj, "__dict__", {}):
        try:
            return True, getattr(obj, name)
        except AttributeError:
            return False, None
    if isinstance(children, dict) and name in children:
        return True, children[name]
    return False, None


def _class_name(cls: type) -> str:
    """The name a config stores for `cls`: its registered name, else its own (custom_objects resolves it)."""
    return registry.registered_name(cls) or cls.__name__


# -- encoding ---------------------------------------------------------------------------------
def encode_value(value: Any) -> Any:
    """A JSON-able form of `value`; raises _Unencodable for what we cannot describe."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode_value(v) for k, v in value.items()}}
    if isinstance(value, Layer):
        return {"__layer__": layer_to_config(value)}
    if isinstance(value, np.dtype):
        return {"__dtype__": str(value)}
    if registry.kind_of(type(value)) in _OBJECT_KINDS:
        return {"__object__": object_to_config(value)}
    raise _Unencodable(type(value).__name__)


def _config_for(obj: Any, cls: type, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Constructor kwargs of `cls` read off `obj`, or None when some required one is not readable."""
    out: dict[str, Any] = {}
    for p in _init_params(cls):
        if p.name in skip:
            continue
        found, value = _lookup(obj, p.name)
        if not found:
            # an argument we cannot read back would silently revert to its default on load
            if p.name.endswith("initializer") and p.default is not inspect.Parameter.empty:
                continue
            return None
        try:
            out[p.name] = encode_value(value)
        except _Unencodable as exc:
            # an initializer only matters before weights exist; the checkpoint carries the weights
            if p.name.endswith("initializer") and p.default is not inspect.Parameter.empty:
                continue
            raise ConfigError(f"{where}: argument {p.name!r} holds a {exc} that cannot be saved as a config; "
                              "give a name or a gpunn object instead, or define get_config()") from None
    return out


def _user_config(obj: Any) -> dict[str, Any] | None:
    """The constructor kwargs from an object's own get_config(), if it defines one.

    A model's get_config() returns its whole architecture (for model_from_config), not kwargs."""
    get_config = getattr(obj, "get_config", None)
    if not callable(get_config) or getattr(obj, "config_is_architecture", False):
        return None
    return {k: encode_value(v) for k, v in get_config().items()}


def object_to_config(obj: Any) -> dict[str, Any]:
    """{"class", "config"} for a gpunn object (regularizer, constraint, loss, ...).

    The nearest class in the MRO whose constructor arguments are all readable is used, so L2(l)
    (which stores `l2`) is saved as L1L2(l1=0, l2=l): the same penalty."""
    where = f"save {type(obj).__name__}"
    config = _user_config(obj)
    if config is not None:
        return {"class": _class_name(type(obj)), "config": config}
    for cls in type(obj).__mro__:
        if cls is object:
            break
        config = _config_for(obj, cls, where)
        if config is not None:
            return {"class": _class_name(cls), "config": config}
    raise ConfigError(f"{where}: cannot read its constructor arguments back; define get_config()")


def _is_graph(obj: Any) -> bool:
    return bool(getattr(type(obj), "_gpunn_model", False)) and getattr(obj, "_graph", None) is not None


def _is_subclassed(obj: Any) -> bool:
    return bool(getattr(type(obj), "_gpunn_model", False)) and getattr(obj, "_graph", None) is None


def layer_to_config(layer: Any, weights_only: bool = False) -> dict[str, Any]:
    """{"class", "config", "trainable"} describing `layer` and its sublayers (a gpunn.Model adds
    its "graph" or, for a subclass, "subclassed"; see graph_to_config and subclassed_to_config).

    `weights_only` (a weights file: the architecture only names the layers, to compare on load)
    lets a subclassed model without get_config() be described."""
    if _is_graph(layer):
        return graph_to_config(layer, weights_only)
    if _is_subclassed(layer):
        return subclassed_to_config(layer, weights_only)
    cls = type(layer)
    where = f"save layer {layer.name!r} ({cls.__name__})"
    config = _user_config(layer)
    if config is None:
        config = _config_for(layer, cls, where, skip=("input_shape",))
        if config is None:
            missing = [p.name for p in _init_params(cls) if p.name != "input_shape"
                       and not p.name.endswith("initializer") and not _lookup(layer, p.name)[0]]
            raise ConfigError(f"{where}: its constructor arguments {missing} are not stored on the layer; "
                              "define get_config() on the class")
    return {"class": _class_name(cls), "config": config, "trainable": bool(layer.trainable)}


def graph_to_config(model: Any, weights_only: bool = False) -> dict[str, Any]:
    """A functional model: each layer once, with the tensors each of its calls read (Keras's
    "inbound_nodes"), the inputs, the outputs and their names (see gpunn.io.graph_check)."""
    graph = model._graph
    inbound = graph.inbound()
    layers = [{"name": key, "layer": layer_to_config(layer, weights_only), "inbound_nodes": inbound[key]}
              for key, layer in graph.layers.items()]
    return {"class": _class_name(type(model)), "config": {"name": model.name}, "trainable": bool(model.trainable),
            "graph": {"inputs": [{"name": n, "shape": list(t.shape)} for n, t in zip(graph.input_names, graph.inputs)],
                      "layers": layers, "outputs": [graph.ref(t) for t in graph.outputs],
                      "output_names": list(graph.output_names)}}


def _shape_json(shape: Any) -> Any:
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple)) for s in shape):
        return [list(s) for s in shape]
    return list(shape)


def _built_shapes(model: Any, prefix: str = "") -> dict[str, Any]:
    """{path: input shape} of a subclassed model's built sublayers (a nested subclass's by theirs)."""
    out: dict[str, Any] = {}
    for key, child in model.children.items():
        path = prefix + key
        if _is_subclassed(child):
            out.update(_built_shapes(child, f"{path}."))
        if getattr(child, "built", False) and child.input_shape is not None:
            out[path] = _shape_json(child.input_shape)
    return out


def _layer_paths(model: Any, prefix: str = "") -> dict[str, str]:
    """{path: class name} of a subclassed model's sublayers, for load_weights to compare."""
    out: dict[str, str] = {}
    for key, child in model.children.items():
        out[prefix + key] = _class_name(type(child))
        if _is_subclassed(child):
            out.update(_layer_paths(child, f"{prefix}{key}."))
    return out


def subclassed_to_config(model: Any, weights_only: bool = False) -> dict[str, Any]:
    """A subclassed model: its class (registered), its constructor's keyword arguments from its
    get_config(), and the input shape each sublayer was built for, so that loading constructs the
    class and builds every layer without running call(). `weights_only` stores no arguments."""
    cls = type(model)
    name = registry.registered_name(cls)
    where = f"save {cls.__name__}"
    if weights_only:
        config: dict[str, Any] = {}
    else:
        own_config = not getattr(cls.get_config, "_gpunn_model_default", False)
        if name is None or not own_config:
            needs = (("register the class with gpunn.io.register_serializable", name is None),
                     ("define get_config() returning its constructor's keyword arguments", not own_config))
            missing = " and ".join(m for m, bad in needs if bad)
            raise ConfigError(f"{where}: a subclassed model is saved whole only when its class can be rebuilt from the "
                              f"file: {missing}; or save the weights alone with save_weights(path) and rebuild the "
                              "model in code before load_weights(path)")
        raw = model.get_config()
        if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
            raise ConfigError(f"{where}: get_config() must return a dict of constructor keyword arguments, got "
                              f"{type(raw).__name__}")
        try:
            inspect.signature(cls).bind(**raw)
        except TypeError as exc:
            raise ConfigError(f"{where}: get_config() returned {sorted(raw)}, which {cls.__name__}() does not take: "
                              f"{exc}") from None
        try:
            config = {k: encode_value(v) for k, v in raw.items()}
        except _Unencodable as exc:
            raise ConfigError(f"{where}: get_config() holds a {exc} that cannot be saved as a config") from None
    shape = model.input_shape
    return {"class": name or cls.__name__, "config": config, "trainable": bool(model.trainable),
            "subclassed": {"input_shape": _shape_json(shape) if shape is not None else None,
                           "built_shapes": _built_shapes(model), "layers": _layer_paths(model)}}


def model_to_config(model: Any, weights_only: bool = False) -> dict[str, Any]:
    """A model's whole architecture: its layer config plus the input shape and dtype it was built
    for (None for a gpunn.Model, whose graph or build shapes say it)."""
    out = layer_to_config(model, weights_only)
    if _is_graph(model) or _is_subclassed(model):
        out["input_shape"] = None
    else:
        out["input_shape"] = list(model.input_shape) if model.input_shape is not None else None
    out["dtype"] = str(np.dtype(model.dtype))
    return out


# -- decoding ---------------------------------------------------------------------------------
def _resolve(name: Any, kinds: tuple[str, ...], custom_objects: dict[str, Any] | None, where: str) -> type:
    return registry.resolve(name, kinds, custom_objects, where, ConfigError)


def decode_value(value: Any, custom_objects: dict[str, Any] | None = None, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigError(f"load: the config is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [decode_value(v, custom_objects, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ConfigError(f"load: malformed config value with keys {sorted(map(str, value))[:8]}: expected one "
                          "marker such as '__tuple__'")
    (tag, inner), = value.items()
    if tag == "__tuple__" and isinstance(inner, list):
        return tuple(decode_value(v, custom_objects, depth + 1) for v in inner)
    if tag == "__dict__" and isinstance(inner, dict):
        return {k: decode_value(v, custom_objects, depth + 1) for k, v in inner.items()}
    if tag == "__float__" and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if tag == "__dtype__" and inner in _VALUE_DTYPES:
        return np.dtype(inner)
    if tag == "__layer__":
        return layer_from_config(inner, custom_objects, depth + 1)
    if tag == "__object__":
        return _instantiate(inner, custom_objects, _OBJECT_KINDS, depth + 1)
    raise ConfigError(f"load: unknown or malformed config marker {str(tag)[:40]!r} (value of type "
                      f"{type(inner).__name__})")


def _kwargs(cls: type, cfg: dict[str, Any], custom_objects: dict[str, Any] | None, where: str,
            depth: int, n_args: int = 0) -> dict[str, Any]:
    """The constructor arguments in `cfg["config"]`, checked against `cls`'s parameters first
    (the first `n_args` parameters are passed positionally by the caller, not by the file)."""
    config = cfg.get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: 'config' must be an object, got {type(config).__name__}")
    accepted = {p.name for p in _init_params(cls)[n_args:]}
    unknown = sorted(k for k in config if k not in accepted)
    if unknown and not _takes_any_keyword(cls):
        raise ConfigError(f"{where}: unknown arguments {unknown[:8]}; {cls.__name__} takes {sorted(accepted)}")
    kwargs = {k: decode_value(v, custom_objects, depth + 1) for k, v in config.items()}
    try:
        inspect.signature(cls).bind(*[None] * n_args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: its saved arguments do not fit {cls.__name__}: {exc}") from None
    return kwargs


def _instantiate(cfg: Any, custom_objects: dict[str, Any] | None, kinds: tuple[str, ...], depth: int = 0,
                 args: tuple[Any, ...] = ()) -> Any:
    """The object `cfg` describes, of one of `kinds`, constructed as cls(*args, **its config)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"load: the config is nested deeper than {MAX_DEPTH} levels")
    kind = "/".join(kinds)
    if not isinstance(cfg, dict) or "class" not in cfg or "config" not in cfg:
        raise ConfigError(f"load {kind}: malformed config: expected an object with keys 'class' and 'config'")
    where = f"load {kind} {str(cfg['class'])[:80]!r}"
    cls = _resolve(cfg["class"], kinds, custom_objects, where)
    kwargs = _kwargs(cls, cfg, custom_objects, where, depth, len(args))
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: its saved arguments do not construct it: {exc}") from exc


def object_from_config(cfg: dict[str, Any], custom_objects: dict[str, Any] | None = None,
                       kind: str = "loss") -> Any:
    """The `kind` object ("loss", "regularizer", "constraint") that `cfg` describes."""
    return _instantiate(cfg, custom_objects, (kind,))


def optimizer_from_config(cfg: Any, model: Any, custom_objects: dict[str, Any] | None = None) -> Any:
    """The optimizer that `cfg` ({"class", "config"}) describes, built over `model`'s parameters."""
    return _instantiate(cfg, custom_objects, ("optimizer",), args=(model,))


def _model_class(cfg: dict[str, Any], custom_objects: dict[str, Any] | None, where: str) -> type:
    cls = _resolve(cfg.get("class"), ("layer",), custom_objects, where)
    if not getattr(cls, "_gpunn_model", False):
        raise ConfigError(f"{where}: class {cfg.get('class')!r} is not a gpunn.Model, but its config describes one")
    return cls


def graph_from_config(cfg: dict[str, Any], custom_objects: dict[str, Any] | None, depth: int) -> Any:
    """The functional model a graph config describes: its layers constructed (registered classes
    only), then called on gpunn.Input tensors in an order the checked graph gives, which builds
    them (under the caller's allocation budget). The rebuilt graph must be the file's exactly."""
    where = f"load model {str(cfg.get('class'))[:80]!r}"
    cls = _model_class(cfg, custom_objects, where)
    config = cfg.get("config")
    if not isinstance(config, dict) or set(config) != {"name"} or not isinstance(config["name"], str):
        raise ConfigError(f"{where}: 'config' of a functional model must be {{'name': str}}, got {str(config)[:80]}")
    try:
        graph = check_graph(cfg["graph"], where)
    except GraphConfigError as exc:
        raise ConfigError(str(exc)) from None
    layers = [layer_from_config(entry["layer"], custom_objects, depth + 1) for entry in graph["layers"]]
    tensors: dict[tuple[str, int], Any] = {}
    try:
        for name, shape in graph["inputs"]:
            tensors[(name, 0)] = Input(shape=shape, name=name)
        for li, ni in graph["order"]:
            entry, layer = graph["layers"][li], layers[li]
            args = [tensors[ref] for ref in entry["nodes"][ni]]
            tensors[(entry["name"], ni)] = layer(args if layer.multi_input or len(args) > 1 else args[0])
        outputs = {name: tensors[ref] for name, ref in zip(graph["output_names"], graph["outputs"])}
        model = cls(inputs=[tensors[(name, 0)] for name, _ in graph["inputs"]], outputs=outputs, name=config["name"])
    except AllocationBudgetError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError, OverflowError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise ConfigError(f"{where}: the graph does not build: {str(exc)[:300]}") from None
    rebuilt = model._graph
    inbound = rebuilt.inbound()
    expected = [(entry["name"], [[list(r) + [0] for r in node] for node in entry["nodes"]])
                for entry in graph["layers"]]
    if [(k, inbound[k]) for k in rebuilt.layers] != expected:
        raise ConfigError(f"{where}: the graph is not in the form gpunn writes (its layers or calls are in another "
                          "order, or some do not lead to an output); save it again with gpunn")
    return model


def _build_subclassed(model: Any, shapes: dict[str, Any], prefix: str, where: str) -> None:
    """Build each sublayer of a subclassed model for the input shape it had when saved."""
    for key, child in model.children.items():
        path = prefix + key
        if _is_subclassed(child):
            _build_subclassed(child, shapes, f"{path}.", where)
            child.input_shape = shapes.get(path)
            child.built = True
        elif path in shapes and not child.built:
            shape = shapes[path]
            child.build(list(shape) if getattr(child, "multi_input", False) else shape)


def build_subclassed(model: Any, info: Any, max_elements: int | None, where: str) -> Any:
    """Build a subclassed model's layers from its config's "subclassed" record (see
    subclassed_to_config), allocating at most `max_elements` parameter and buffer elements
    (None: within the allocation budget already in force, that of the model it is part of)."""
    if not isinstance(info, dict) or set(info) != {"input_shape", "built_shapes", "layers"}:
        raise ConfigError(f"{where}: 'subclassed' must be an object with keys input_shape, built_shapes, layers")
    try:
        shapes = check_build_shapes(info["built_shapes"], where)
        input_shape = None if info["input_shape"] is None else check_shape_tree(info["input_shape"], "'input_shape'",
                                                                                where)
    except GraphConfigError as exc:
        raise ConfigError(str(exc)) from None
    known = _layer_paths(model)
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise ConfigError(f"{where}: 'built_shapes' names layers {unknown[:8]} that {type(model).__name__} does not "
                          f"have; its layers are {sorted(known)[:20]}")
    try:
        with allocation_budget(max_elements, where) if max_elements is not None else contextlib.nullcontext():
            _build_subclassed(model, shapes, "", where)
    except AllocationBudgetError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError, OverflowError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise ConfigError(f"{where}: the layers do not build for their saved shapes: {str(exc)[:300]}") from None
    model.input_shape = input_shape
    model.built = True
    return model


def layer_from_config(cfg: Any, custom_objects: dict[str, Any] | None = None, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigError(f"load: the config is nested deeper than {MAX_DEPTH} levels")
    if isinstance(cfg, dict) and "graph" in cfg:
        layer = graph_from_config(cfg, custom_objects, depth)
    else:
        layer = _instantiate(cfg, custom_objects, ("layer",), depth)
        if isinstance(cfg.get("subclassed"), dict) or "subclassed" in cfg:
            if not _is_subclassed(layer):
                raise ConfigError(f"load layer {str(cfg['class'])[:80]!r}: a 'subclassed' record for a class that is "
                                  "not a subclass of gpunn.Model")
            build_subclassed(layer, cfg["subclassed"], None, f"load model {str(cfg['class'])[:80]!r}")
    trainable = cfg.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ConfigError(f"load layer {cfg['class']!r}: 'trainable' must be true or false, got {trainable!r}")
    if trainable is False:
        layer.trainable = False  # before build, so its parameters are created frozen
    return layer


def _input_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_CONFIG_ELEMENTS for s in value):
        raise ConfigError(f"{where}: 'input_shape' must be a non-empty list of positive ints, got "
                          f"{str(value)[:80]}")
    if math.prod(value) > MAX_CONFIG_ELEMENTS:
        raise ConfigError(f"{where}: 'input_shape' {tuple(value)} holds more than {MAX_CONFIG_ELEMENTS:,} "
                          "elements per sample")
    return tuple(value)


def build_as_configured(model: Any, config: dict[str, Any], max_elements: int, where: str) -> Any:
    """Give `model` the dtype of `config` and build it for the config's input shape (if any), allocating
    at most `max_elements` parameter and buffer elements."""
    dtype = config.get("dtype", "float32")
    if dtype not in MODEL_DTYPES:
        raise ConfigError(f"{where}: 'dtype' must be one of {list(MODEL_DTYPES)}, got {str(dtype)[:40]!r}")
    if "subclassed" in config:  # load_weights into a subclassed model not yet run
        model._dtype = np.dtype(dtype)
        return build_subclassed(model, config["subclassed"], max_elements, where)
    shape = config.get("input_shape")
    shape = None if shape is None else _input_shape(shape, where)
    model._dtype = np.dtype(dtype)
    if shape is not None:
        try:
            with allocation_budget(max_elements, where):
                model.build(shape)
        except AllocationBudgetError as exc:
            raise ConfigError(str(exc)) from None
        except (TypeError, ValueError, OverflowError, KeyError, IndexError, ZeroDivisionError) as exc:
            raise ConfigError(f"{where}: the architecture does not build for input shape {shape}: {exc}") from None
    return model


def build_model(config: Any, custom_objects: dict[str, Any] | None, max_elements: int, where: str) -> Any:
    """model_from_config with an explicit cap on the elements the build may allocate.

    Image layers whose config names no data_format (files written before it existed) are
    channels_first, as they were then, whatever `use_image_data_format` block the caller is in."""
    with use_image_data_format(CHANNELS_FIRST):
        return _build_model(config, custom_objects, max_elements, where)


def _build_model(config: Any, custom_objects: dict[str, Any] | None, max_elements: int, where: str) -> Any:
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: the model config must be an object, got {type(config).__name__}")
    extra = sorted(set(config) - {"class", "config", "trainable", "input_shape", "dtype", "module", "graph",
                                  "subclassed"})
    if extra:
        raise ConfigError(f"{where}: unknown keys {extra[:8]} in the model config")
    if "graph" in config or "subclassed" in config:
        dtype = config.get("dtype", "float32")
        if dtype not in MODEL_DTYPES:
            raise ConfigError(f"{where}: 'dtype' must be one of {list(MODEL_DTYPES)}, got {str(dtype)[:40]!r}")
        if config.get("input_shape") is not None:
            raise ConfigError(f"{where}: a gpunn.Model's config has 'input_shape' null (its graph or build shapes "
                              "say it)")
        try:
            with allocation_budget(max_elements, where):  # layers are built while the graph is rebuilt
                model = layer_from_config(config, custom_objects)
        except AllocationBudgetError as exc:
            raise ConfigError(str(exc)) from None
        if np.dtype(dtype) != np.dtype(model.dtype):
            model.to_dtype(dtype)
        return model
    model = layer_from_config(config, custom_objects)
    return build_as_configured(model, config, max_elements, where)


def model_from_config(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Any:
    """The model that `model.get_config()` described, built when the config names its input shape.

    Only registered gpunn classes and `custom_objects` are constructed; a bad config raises
    ConfigError (a ValueError) naming what is wrong, before anything large is allocated."""
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"model_from_config: argument 'custom_objects' must be a dict from name to class, got "
                        f"{type(custom_objects).__name__}")
    return build_model(config, custom_objects, MAX_CONFIG_ELEMENTS, "model_from_config")
