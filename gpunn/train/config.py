"""Architectures (and losses, optimizers) to and from plain JSON-able configs.

A layer's config is read off its constructor: for each `__init__` argument we take the attribute of
the same name (or the child layer of that name), which is how every gpunn layer stores them. A
layer may instead define `get_config()` returning its constructor's keyword arguments. Values are
encoded with explicit markers so that tuples, nested layers and gpunn objects (regularizers,
constraints) come back as they went in.

Decoding only ever instantiates classes defined in `gpunn.*` modules, or classes the caller
passes in `custom_objects`: a config file cannot name arbitrary code to run.
"""
from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """An object that cannot be described as a config, or a config that does not describe one."""


class _Unencodable(Exception):
    pass


_POSITIONAL_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _init_params(cls: type) -> list[inspect.Parameter]:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    return [p for p in list(sig.parameters.values())[1:] if p.kind not in _POSITIONAL_KINDS]


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


def encode_value(value: Any) -> Any:
    """A JSON-able form of `value`; raises _Unencodable for what we cannot describe."""
    from gpunn.layers.base import Layer
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
    if type(value).__module__.startswith("gpunn.") and not inspect.isroutine(value):
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


def object_to_config(obj: Any) -> dict[str, Any]:
    """{"module", "class", "config"} for a gpunn object (regularizer, constraint, loss, ...).

    The nearest class in the MRO whose constructor arguments are all readable is used, so L2(l)
    (which stores `l2`) is saved as L1L2(l1=0, l2=l): the same penalty."""
    where = f"save {type(obj).__name__}"
    get_config = getattr(obj, "get_config", None)
    if callable(get_config):
        return {"module": type(obj).__module__, "class": type(obj).__qualname__,
                "config": {k: encode_value(v) for k, v in get_config().items()}}
    for cls in type(obj).__mro__:
        if cls is object:
            break
        config = _config_for(obj, cls, where)
        if config is not None:
            return {"module": cls.__module__, "class": cls.__qualname__, "config": config}
    raise ConfigError(f"{where}: cannot read its constructor arguments back; define get_config()")


def layer_to_config(layer: Any) -> dict[str, Any]:
    """{"module", "class", "config", "trainable"} describing `layer` and its sublayers."""
    cls = type(layer)
    where = f"save layer {layer.name!r} ({cls.__name__})"
    get_config = getattr(layer, "get_config", None)
    if callable(get_config):
        config = {k: encode_value(v) for k, v in get_config().items()}
    else:
        config = _config_for(layer, cls, where, skip=("input_shape",))
        if config is None:
            missing = [p.name for p in _init_params(cls) if p.name != "input_shape"
                       and not p.name.endswith("initializer") and not _lookup(layer, p.name)[0]]
            raise ConfigError(f"{where}: its constructor arguments {missing} are not stored on the layer; "
                              "define get_config() on the class")
    return {"module": cls.__module__, "class": cls.__qualname__, "config": config,
            "trainable": bool(layer.trainable)}


def _resolve_class(module: str, name: str, custom_objects: dict[str, Any] | None, where: str) -> type:
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if not isinstance(module, str) or not (module == "gpunn" or module.startswith("gpunn.")):
        raise ConfigError(f"{where}: class {module}.{name} is not part of gpunn; pass it in custom_objects="
                          f"{{{name!r}: cls}} to load it")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{where}: module {module!r} named in the file does not exist in this gpunn") from None
    obj: Any = mod
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ConfigError(f"{where}: class {name!r} does not exist in {module!r} in this gpunn")
    return obj


def decode_value(value: Any, custom_objects: dict[str, Any] | None = None) -> Any:
    if isinstance(value, list):
        return [decode_value(v, custom_objects) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ConfigError(f"load: malformed config value {value!r}")
    (tag, inner), = value.items()
    if tag == "__tuple__":
        return tuple(decode_value(v, custom_objects) for v in inner)
    if tag == "__dict__":
        return {k: decode_value(v, custom_objects) for k, v in inner.items()}
    if tag == "__float__":
        return float(inner)
    if tag == "__dtype__":
        return np.dtype(inner)
    if tag == "__layer__":
        return layer_from_config(inner, custom_objects)
    if tag == "__object__":
        return object_from_config(inner, custom_objects)
    raise ConfigError(f"load: unknown config marker {tag!r}")


def _instantiate(cfg: Any, custom_objects: dict[str, Any] | None, kind: str) -> tuple[type, Any]:
    if not isinstance(cfg, dict) or not {"module", "class", "config"} <= set(cfg):
        raise ConfigError(f"load: malformed {kind} config {cfg!r}: expected keys module, class, config")
    where = f"load {kind} {cfg['class']!r}"
    cls = _resolve_class(cfg["module"], cfg["class"], custom_objects, where)
    if not isinstance(cfg["config"], dict):
        raise ConfigError(f"{where}: 'config' must be an object, got {cfg['config']!r}")
    kwargs = {k: decode_value(v, custom_objects) for k, v in cfg["config"].items()}
    try:
        return cls, cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: its saved arguments do not construct it: {exc}") from exc


def object_from_config(cfg: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Any:
    return _instantiate(cfg, custom_objects, "object")[1]


def layer_from_config(cfg: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Any:
    from gpunn.layers.base import Layer
    cls, layer = _instantiate(cfg, custom_objects, "layer")
    if not isinstance(layer, Layer):
        raise ConfigError(f"load layer: {cls.__name__} is not a gpunn Layer")
    if cfg.get("trainable", True) is False:
        layer.trainable = False  # before build, so its parameters are created frozen
    return layer
