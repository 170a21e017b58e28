"""The registry of serializable classes: the only classes a config or checkpoint may name.

A config names a class by its registered name ("Dense", "L1L2", "Adam", or "package>Name" for a
class a user registered). Nothing else is ever resolved: no module path from the file is imported
and no dotted attribute chain is followed, so a file cannot reach `subprocess.Popen` or
`ctypes.CDLL` through a module that gpunn happens to import.

gpunn's own classes are registered, at import, from an explicit list of modules (each class *defined* in one
of them that derives from the kind's base class); users register theirs with
`register_serializable`, as Keras does with `register_keras_serializable`, or pass them per call
in `custom_objects`. Each entry carries its kind (layer, loss, optimizer, regularizer,
constraint), so that a config asking for a layer can only ever construct a Layer.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from gpunn import constraints, losses, regularizers
from gpunn.layers import (activations, container, conv, dense, dropout, maxout, merge, normalization, pooling,
                          reshape, residual, weight_norm)
from gpunn.layers.base import Layer
from gpunn.optim import adadelta, adagrad, adam, nadam, rmsprop, sgd
from gpunn.optim.base import Optimizer

KINDS = ("layer", "loss", "optimizer", "regularizer", "constraint")

# kind -> (base class, the modules whose classes gpunn serializes)
_GPUNN_MODULES: dict[str, tuple[type, tuple[ModuleType, ...]]] = {
    "layer": (Layer, (activations, container, conv, dense, dropout, maxout, merge, normalization, pooling, reshape,
                      residual, weight_norm)),
    "loss": (losses.Loss, (losses,)),
    "optimizer": (Optimizer, (sgd, adagrad, rmsprop, adadelta, adam, nadam)),
    "regularizer": (regularizers.Regularizer, (regularizers,)),
    "constraint": (constraints.Constraint, (constraints,)),
}

_lock = threading.Lock()
_by_name: dict[str, tuple[str, type]] = {}  # registered name -> (kind, class)
_by_class: dict[type, str] = {}


def _add(name: str, kind: str, cls: type) -> None:
    known = _by_name.get(name)
    if known is not None and known[1] is not cls:
        raise ValueError(f"register_serializable: the name {name!r} is already registered for "
                         f"{known[1].__module__}.{known[1].__qualname__}; pass another name= or package=")
    _by_name[name] = (kind, cls)
    _by_class[cls] = name


def _register_gpunn_classes() -> None:
    """Each class *defined* in one of the listed modules that derives from its kind's base."""
    for kind, (base, modules) in _GPUNN_MODULES.items():
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, base) and value is not base \
                        and value.__module__ == module.__name__:
                    _add(value.__name__, kind, value)


_register_gpunn_classes()


def register_builtin(cls: type) -> type:
    """Register one of gpunn's own classes that lives above this package (gpunn.Sequential) under
    its bare class name, as gpunn's other classes are."""
    kind = kind_of(cls)
    if kind is None or not cls.__module__.startswith("gpunn."):
        raise TypeError(f"register_builtin: argument 'cls' must be a gpunn Layer, Loss, Optimizer, Regularizer "
                        f"or Constraint defined in gpunn, got {cls!r}; users call register_serializable")
    with _lock:
        _add(cls.__name__, kind, cls)
    return cls


def kind_of(cls: type) -> str | None:
    """The kind whose base class `cls` derives from, or None."""
    for kind in KINDS:
        if isinstance(cls, type) and issubclass(cls, _GPUNN_MODULES[kind][0]):
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
        with _lock:
            _add(f"{package}>{name or klass.__name__}", kind, klass)
        return klass
    return register if cls is None else register(cls)


def registered_name(cls: type) -> str | None:
    """The name `cls` is saved under, or None when it is not registered."""
    return _by_class.get(cls)


def resolve(name: Any, kinds: tuple[str, ...], custom_objects: dict[str, Any] | None, where: str,
            error: Callable[[str], Exception]) -> type:
    """The registered (or caller-supplied) class called `name`, which must be of one of `kinds`.

    Raises `error(message)` for a name that is not registered, not a class, or of another kind."""
    if not isinstance(name, str):
        raise error(f"{where}: the class name must be a str, got {type(name).__name__}")
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
