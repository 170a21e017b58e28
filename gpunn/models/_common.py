"""Shared argument checks and the build step of the zoo's factories."""
from __future__ import annotations

from typing import Any

from gpunn.layers import Layer
from gpunn.train import Sequential


def check_shape(input_shape: Any, where: str, ndim: int | None = None) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) >= 1 and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape)
    if not ok or (ndim is not None and len(input_shape) != ndim):
        want = f"{ndim} positive ints (C, H, W)" if ndim == 3 else "a tuple of positive ints"
        raise ValueError(f"{where}: argument 'input_shape' must be {want} (no batch axis), got {input_shape!r}")
    return tuple(input_shape)


def check_classes(num_classes: Any, where: str) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"{where}: argument 'num_classes' must be a positive int, got {num_classes!r}")
    return num_classes


def check_rate(rate: Any, where: str, name: str = "dropout") -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{where}: argument '{name}' must be a float in [0, 1), got {rate!r}")
    return float(rate)


def finish(layers: list[Layer], input_shape: tuple[int, ...], name: str) -> Sequential:
    """A Sequential of `layers`, built for `input_shape` so that shapes and parameter counts are
    known at once (and a wrong input shape fails here, not at the first batch)."""
    model = Sequential(layers, name=name)
    model.build(input_shape)
    return model
