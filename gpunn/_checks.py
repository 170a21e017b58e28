"""Argument validation shared by every layer: one place that words the errors.

Each error names the function, the argument and what was expected, so a user can fix the
call without reading our source.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def pair(value: Any, name: str, where: str, minimum: int = 0) -> tuple[int, int]:
    """Normalise an int or a pair of ints (kernel size, stride, padding, dilation)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{where}: argument '{name}' must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{where}: argument '{name}' must be >= {minimum}, got {value!r}")
    return out


def positive_int(value: Any, name: str, where: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: argument '{name}' must be a positive int, got {value!r}")
    return int(value)


def check_float_array(x: Any, name: str, where: str, ndim: int | tuple[int, ...] | None = None,
                      layout: str = "") -> None:
    """A floating-point array with a non-empty batch axis and the expected rank."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(f"{where}: argument '{name}' must be an array, got {type(x).__name__}")
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{where}: argument '{name}' must be a floating-point array (float32 or float64), "
                        f"got dtype {np.dtype(dtype)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if len(shape) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            hint = f" {layout}" if layout else ""
            raise ValueError(f"{where}: argument '{name}' must have {want} dimensions{hint}, got shape {tuple(shape)}")
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"{where}: argument '{name}' has an empty batch (shape {tuple(shape)}); "
                         "expected at least one sample")
