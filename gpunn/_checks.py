"""Argument validation shared by every layer: one place that words the errors.

Each error names the function, the argument and what was expected, so a user can fix the
call without reading our source.
"""
from __future__ import annotations

import math
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
        raise TypeError(f"{where}: argument '{name}' must be a floating-point array, got dtype {np.dtype(dtype)}; "
                        f"convert it, e.g. {name}.astype('float32')")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if len(shape) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            hint = f" {layout}" if layout else ""
            raise ValueError(f"{where}: argument '{name}' must have {want} dimensions{hint}, got shape {tuple(shape)}")
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"{where}: argument '{name}' has an empty batch (shape {tuple(shape)}); "
                         "expected at least one sample")


#: the dtypes a model may compute in. float16 needs mixed precision (float32 master weights and
#: optimizer state, loss scaling), which gpunn does not have: a plain float16 model underflows,
#: e.g. Adam's eps = 1e-8 is 0 in float16, and trains to NaN.
MODEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def model_dtype(value: Any, name: str, where: str) -> np.dtype:
    """A dtype a layer or model may hold its parameters in: float32 or float64."""
    try:
        dtype = np.dtype(value) if value is not None and not isinstance(value, bool) else None
    except TypeError:
        dtype = None
    if dtype is not None and dtype.kind == "f" and dtype.newbyteorder("=") in MODEL_DTYPES:
        return dtype.newbyteorder("=")
    if dtype is not None and dtype.kind == "f":
        raise ValueError(f"{where}: argument '{name}' must be float32 or float64, got {dtype}; gpunn has no mixed "
                         "precision yet, so a float16 model would underflow (float16 data is cast to the model's "
                         "dtype: keep the model in float32)")
    raise TypeError(f"{where}: argument '{name}' must be float32 or float64, got {value!r}")


def axis_arg(value: Any, name: str, where: str) -> int:
    """An int naming an array axis (negative counts from the end); its range is checked at use,
    against the rank of the array it applies to (see check_axis)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: argument '{name}' must be an int, got {value!r}")
    return int(value)


def check_axis(axis: int, shape: tuple[int, ...], name: str, where: str) -> None:
    """Raise unless `axis` is a valid axis of an array of `shape` (-ndim <= axis < ndim)."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{where}: argument '{name}'={axis} is out of range for argument 'x' of shape {tuple(shape)} "
                         f"({ndim} dimensions); expected an axis in [{-ndim}, {ndim - 1}]")


def check_finite(x: Any, name: str, where: str) -> None:
    """Raise if the float array `x` (of any backend) holds NaN or Inf.

    Two reductions instead of isfinite(x).all(): NaN propagates through min and max and Inf shows
    up in one of them, so no boolean copy of a whole data set is made."""
    if getattr(x, "size", 0) == 0 or np.dtype(x.dtype).kind != "f":
        return
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        what = "NaN" if np.isnan(lo) or np.isnan(hi) else "Inf"
        raise ValueError(f"{where}: argument '{name}' contains non-finite values ({what}); expected finite numbers "
                         f"(min {lo}, max {hi})")


def check_grad_shape(dy: Any, expected: tuple[int, ...], where: str) -> None:
    """The upstream gradient of a backward() must have the shape of its forward's output."""
    shape = getattr(dy, "shape", None)
    if shape is None:
        raise TypeError(f"{where}: argument 'dy' must be an array, got {type(dy).__name__}")
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{where}: argument 'dy' must have the shape of the forward output {tuple(expected)}, "
                         f"got {tuple(shape)}")


def shape_arg(shape: Any, where: str) -> tuple[int, ...]:
    """A tuple of non-negative ints; a float (2.5 or 2.0) or a bool is refused, never truncated."""
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"{where}: argument 'shape' must be a tuple of ints, got {shape!r}")
    try:
        entries = tuple(shape)
    except TypeError:
        raise TypeError(f"{where}: argument 'shape' must be a tuple of ints, got {shape!r}") from None
    for i, s in enumerate(entries):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{where}: argument 'shape' must be a tuple of ints, got {shape!r} "
                            f"(entry {i} is a {type(s).__name__})")
    out = tuple(int(s) for s in entries)
    if any(s < 0 for s in out):
        raise ValueError(f"{where}: argument 'shape' must have non-negative sizes, got {out}")
    return out


def float_dtype(dtype: Any, where: str) -> np.dtype:
    """A floating-point dtype: an integer one would truncate every weight to 0 (or +-1)."""
    try:
        out = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        out = None
    if out is None or out.kind != "f":
        got = out if out is not None else repr(dtype)
        raise TypeError(f"{where}: argument 'dtype' must be a floating-point dtype (float32 or float64), got {got}")
    return out


def finite_real(value: Any, name: str, where: str, minimum: float | None = None, strict: bool = False) -> float:
    """A finite real number (not a bool, not NaN or inf); >= minimum, or > minimum when strict."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: argument '{name}' must be a finite float, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{where}: argument '{name}' must be a finite float, got {value!r}")
    if minimum is not None and (out <= minimum if strict else out < minimum):
        want = f"a positive float (> {minimum:g})" if strict else f">= {minimum:g}"
        raise ValueError(f"{where}: argument '{name}' must be {want}, got {value!r}")
    return out
