"""Optimizers by name, for Keras-style `compile(optimizer="adam")`."""
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


def register_optimizer(name: str, cls: type[Optimizer]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: argument 'cls' must be an Optimizer subclass, got {cls!r}")
    OPTIMIZERS[name.strip().lower()] = cls


def get_optimizer(name: str | Optimizer, params: Any = None, **kwargs: Any) -> Optimizer:
    """`name` ("sgd", "adam", ...) built on `params` with `kwargs`; an Optimizer instance is returned as is."""
    if isinstance(name, Optimizer):
        if kwargs:
            raise ValueError(f"get_optimizer: got an Optimizer instance and also settings {sorted(kwargs)}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"get_optimizer: argument 'name' must be a str or an Optimizer, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"get_optimizer: argument 'name' must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if params is None:
        raise ValueError(f"get_optimizer: argument 'params' is required to build {name!r}")
    return OPTIMIZERS[key](params, **kwargs)
