"""The registry of serializable classes: the only classes a config or checkpoint may name.

A config names a class by its registered name ("Dense", "L1L2", "Adam", or "package>Name" for a
class a user registered). Nothing else is ever resolved: no module path from the file is imported
and no dotted attribute chain is followed, so a file cannot reach `subprocess.Popen` or
`ctypes.CDLL` through a module that gpunn happens to import.

gpunn's own classes are registered from an explicit list of modules (each class *defined* in one
of them that derives from the kind's base class); users register theirs with
`register_serializable`, as Keras does with `register_keras_serializable`, or pass them per call
in `custom_objects`. Each entry carries its kind (layer, loss, optimizer, regularizer,
constraint), so that a config asking for a layer can only ever construct a Layer.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

KINDS = ("layer", "loss", "optimizer", "regularizer", "constraint")

# kind -> (module of the base class, base class name, modules whose classes gpunn serializes)
_GPUNN_MODULES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "layer": ("gpunn.layers.base", "Layer", tuple(f"gpunn.layers.{m}" for m in (
        "activations", "container", "conv", "dense", "dropout", "maxout", "normalization", "pooling", "reshape",
        "residual", "weight_norm"))),
    "loss": ("gpunn.losses", "Loss", ("gpunn.losses",)),
    "optimizer": ("gpunn.optim.base", "Optimizer", tuple(f"gpunn.optim.{m}" for m in (
        "sgd", "adagrad", "rmsprop", "adadelta", "adam", "nadam"))),
    "regularizer": ("gpunn.regularizers", "Regularizer", ("gpunn.regularizers",)),
    "constraint": ("gpunn.constraints", "Constraint", ("gpunn.constraints",)),
}

_lock = threading.Lock()
_by_name: dict[str, tuple[str, type]] = {}  # registered name -> (kind, class)
_by_class: dict[type, str] = {}
_loaded = False


def _base(kind: str) -> type:
    module, name, _ = _GPUNN_MODULES[kind]
    return getattr(importlib.import_module(module), name)


def _add(name: str, kind: str, cls: type) -> None:
    known = _by_name.get(name)
    if known is not None and known[1] is not cls:
        raise ValueError(f"register_serializable: the name {name!r} is already registered for "
                         f"{known[1].__module__}.{known[1].__qualname__}; pass another name= or package=")
    _by_name[name] = (kind, cls)
    _by_class[cls] = name


def _ensure_loaded() -> None:
    """Register gpunn's own classes, once (lazily: gpunn.layers imports this package's siblings)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        for kind, (_, _, modules) in _GPUNN_MODULES.items():
            base = _base(kind)
            for module_name in modules:
                module = importlib.import_module(module_name)
                for value in vars(module).values():
                    if isinstance(value, type) and issubclass(value, base) and value is not base \
                            and value.__module__ == module_name:
                        _add(value.__name__, kind, value)
        _loaded = True


def kind_of(cls: type) -> str | None:
    """The kind whose base class `cls` derives from, or None."""
    for kind in KINDS:
        if isinstance(cls, type) and issubclass(cls, _base(kind)):
            return kind
    return None


def register_serializable(cls: type | None = None, *, name: str | None = None, package: str = "Custom"
                          ) -> Any:
    """Register a user class so that configs and checkpoints may name it (usable as a decorator).

    It is saved under "package>name" (name defaults to the class name); it must derive from
    gpunn's Layer, Loss, Optimizer, Regularizer or Constraint."""
    def register(klass: type) -> type:
        kind = kind_of(klass)
        if kind is None:
            raise TypeError(f"register_serializable: argument 'cls' must be a subclass of a gpunn Layer, Loss, "
                            f"Optimizer, Regularizer or Constraint, got {klass!r}")
        for arg, value in (("name", name), ("package", package)):
            if value is not None and (not isinstance(value, str) or not value or ">" in value):
                raise ValueError(f"register_serializable: argument {arg!r} must be a non-empty str without '>', "
                                 f"got {value!r}")
        _ensure_loaded()
        with _lock:
            _add(f"{package}>{name or klass.__name__}", kind, klass)
        return klass
    return register if cls is None else register(cls)


def registered_name(cls: type) -> str | None:
    """The name `cls` is saved under, or None when it is not registered."""
    _ensure_loaded()
    return _by_class.get(cls)


def resolve(name: Any, kinds: tuple[str, ...], custom_objects: dict[str, Any] | None, where: str,
            error: Callable[[str], Exception]) -> type:
    """The registered (or caller-supplied) class called `name`, which must be of one of `kinds`.

    Raises `error(message)` for a name that is not registered, not a class, or of another kind."""
    if not isinstance(name, str):
        raise error(f"{where}: the class name must be a str, got {type(name).__name__}")
    _ensure_loaded()
    if custom_objects and name in custom_objects:
        cls = custom_objects[name]
        if not isinstance(cls, type):
            raise error(f"{where}: custom_objects[{name!r}] must be a class, got {type(cls).__name__}")
        got = kind_of(cls)
    elif name in _by_name:
        got, cls = _by_name[name]
    else:
        raise error(f"{where}: class {name[:80]!r} is not a registered gpunn class; register it with "
                    f"gpunn.io.register_serializable or pass custom_objects={{{name[:80]!r}: cls}}")
    if got not in kinds:
        raise error(f"{where}: class {name!r} is of kind {got or 'none (not a gpunn class)'!r}, but kind "
                    f"{' or '.join(map(repr, kinds))} is expected here")
    return cls
