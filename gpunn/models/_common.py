"""Shared argument checks and the build step of the zoo's factories."""
from __future__ import annotations

from typing import Any

from gpunn._checks import is_int, positive_int, real_arg
from gpunn.layers import Layer
from gpunn.train import Sequential


def check_shape(input_shape: Any, where: str, ndim: int | None = None) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) >= 1 and all(
        is_int(s, numpy=False) and s >= 1 for s in input_shape)
    if not ok or (ndim is not None and len(input_shape) != ndim):
        want = f"{ndim} positive ints (C, H, W)" if ndim == 3 else "a tuple of positive ints"
        raise ValueError(f"{where}: argument 'input_shape' must be {want} (no batch axis), got {input_shape!r}")
    return tuple(input_shape)


def check_classes(num_classes: Any, where: str) -> int:
    """The zoo's `num_classes`: a Python int >= 1."""
    return positive_int(num_classes, "num_classes", where, numpy=False)


def check_rate(rate: Any, where: str, name: str = "dropout") -> float:
    """The zoo's dropout rates: Python numbers in [0, 1), as Dropout takes them."""
    return real_arg(rate, name, where, 0, 1, hi_open=True, want="a float in [0, 1)", numpy=False)


def finish(layers: list[Layer], input_shape: tuple[int, ...], name: str) -> Sequential:
    """A Sequential of `layers`, built for `input_shape` so that shapes and parameter counts are
    known at once (and a wrong input shape fails here, not at the first batch)."""
    model = Sequential(layers, name=name)
    model.build(input_shape)
    return model
