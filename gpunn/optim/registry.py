"""Optimizers by name, for Keras-style `compile(optimizer="adam")`, with Keras's defaults on request.

The classes keep their documented (PyTorch) defaults. `get_optimizer(name, keras_defaults=True)`,
which is what `compile` uses for a name, starts from Keras 3's defaults for that name instead
(`KERAS_DEFAULTS`, mapped onto gpunn's argument names), under any settings given explicitly.
Keras forms gpunn does not compute are noted per entry: the optimizer runs gpunn's (PyTorch's)
arithmetic with Keras's numbers.
"""
from __future__ import annotations

from typing import Any

from gpunn.optim.adadelta import Adadelta
from gpunn.optim.adagrad import Adagrad
from gpunn.optim.adam import Adam, AdamW
from gpunn.optim.base import Optimizer
from gpunn.optim.nadam import Nadam
from gpunn.optim.rmsprop import RMSprop
from gpunn.optim.sgd import SGD

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adadelta": Adadelta,
    "adam": Adam, "adamw": AdamW, "nadam": Nadam,
}


#: Keras 3's defaults (keras/src/optimizers/*.py) in gpunn's argument names; "lr" is Keras's
#: learning_rate. What gpunn cannot express exactly:
#: - adam, adamw: Keras adds epsilon to sqrt(v) before the bias correction ("epsilon hat"),
#:   PyTorch and gpunn after it: Keras's epsilon e acts as e / sqrt(1 - beta2^t) would here
#:   (larger in the first steps, the same once beta2^t is small); gpunn uses e as given.
#: - weight_decay: Keras's is decoupled for every optimizer; gpunn's is coupled L2 except AdamW's.
#: - rmsprop, adagrad: Keras puts epsilon inside the square root (sqrt(v + eps)), gpunn outside.
#: sgd, adadelta and nadam (momentum_decay=1.0 is Keras's 0.96^t schedule) match Keras's updates.
KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
    "rmsprop": {"lr": 1e-3, "rho": 0.9, "momentum": 0.0, "eps": 1e-7, "centered": False},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "amsgrad": False},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "amsgrad": False, "weight_decay": 0.004},
    "adagrad": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7},
    "adadelta": {"lr": 1e-3, "rho": 0.95, "eps": 1e-7},
    "nadam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "momentum_decay": 1.0},
}


def register_optimizer(name: str, cls: type[Optimizer]) -> None:
    """Make `cls` available by `name` (case-insensitive) to get_optimizer and compile."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"register_optimizer: argument 'name' must be a non-empty str, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: argument 'cls' must be an Optimizer subclass, got {cls!r}")
    OPTIMIZERS[name.strip().lower()] = cls


def get_optimizer(name: str | Optimizer, params: Any = None, keras_defaults: bool = False,
                  **kwargs: Any) -> Optimizer:
    """The optimizer `name` ("sgd", "adam", ...) with `kwargs` (lr= or learning_rate=, ...), bound
    to `params` (a model or a list of Parameter), or unbound when `params` is None (see
    Optimizer.bind). An Optimizer instance is returned as is.

    `keras_defaults=True` starts from Keras's defaults for the name (KERAS_DEFAULTS) instead of
    the class's; explicit kwargs override them. A name registered without Keras defaults takes
    the class's."""
    where = "get_optimizer"
    if not isinstance(keras_defaults, bool):
        raise TypeError(f"{where}: argument 'keras_defaults' must be True or False, got {keras_defaults!r}")
    if isinstance(name, Optimizer):
        if kwargs:
            raise ValueError(f"{where}: got an Optimizer instance and also settings {sorted(kwargs)}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"{where}: argument 'name' must be a str or an Optimizer, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"{where}: argument 'name' must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    settings = dict(KERAS_DEFAULTS.get(key, {})) if keras_defaults else {}
    if "learning_rate" in kwargs:
        settings.pop("lr", None)  # the caller's learning_rate replaces the default lr, under either name
    settings.update(kwargs)
    return OPTIMIZERS[key](params, **settings)
