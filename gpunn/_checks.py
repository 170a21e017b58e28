"""Argument validation for the whole package: one place that words the errors.

Each error names the function (`where`), the argument (`name`) and what was expected, so a user
can fix the call without reading our source:

    "{where}: argument '{name}' must be {what was expected}, got {the value}"

This module is the bottom of the import stack: it imports nothing from gpunn.

Numbers: `int_arg` / `positive_int` for ints; `real_arg` (any bounds), `nonneg_real`,
`positive_real` and `finite_real` for real numbers (ints or floats, returned as float); `pair` /
`real_pair` for a number or a pair of them. A bool is never a number here (True would silently
be 1). `numpy=False` refuses NumPy scalars other than np.float64 (a float subclass), for
arguments that have only ever taken Python numbers; `is_int` / `is_real` are the bare type
tests, for callers that report in their own words.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

_INTS: tuple[type, ...] = (int, np.integer)
_REALS: tuple[type, ...] = (int, float, np.integer, np.floating)


def is_int(value: Any, numpy: bool = True) -> bool:
    """An int (or a NumPy integer, unless `numpy` is False), but not a bool."""
    return isinstance(value, _INTS if numpy else int) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any, numpy: bool = True) -> bool:
    """An int or a float (or a NumPy integer or floating scalar, unless `numpy` is False), but not
    a bool. NaN and inf pass: finiteness is real_arg's business."""
    return isinstance(value, _REALS if numpy else (int, float)) and not isinstance(value, (bool, np.bool_))


def _refuse(where: str, name: str, want: str, value: Any) -> str:
    return f"{where}: argument '{name}' must be {want}, got {value!r}"


def int_arg(value: Any, name: str, where: str, minimum: int | None = None, *, want: str | None = None,
            numpy: bool = True) -> int:
    """An int >= `minimum` (any int when None), returned as a Python int.

    Anything else, a bool or a float such as 2.0 included, is a ValueError
    "{where}: argument '{name}' must be an int >= {minimum}, got {value!r}"; `want` rewords the
    expectation ("a positive int", "an int >= 1 (the count after increment)")."""
    if not is_int(value, numpy) or (minimum is not None and value < minimum):
        if want is None:
            want = "an int" if minimum is None else f"an int >= {minimum}"
        raise ValueError(_refuse(where, name, want, value))
    return int(value)


def positive_int(value: Any, name: str, where: str, *, numpy: bool = True) -> int:
    """An int >= 1 (a size, a count); ValueError "... must be a positive int, got ..." otherwise."""
    return int_arg(value, name, where, 1, want="a positive int", numpy=numpy)


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    """The default wording of real_arg's expectation. Bounds print as given: 0 as "0", 0.0 as "0.0"."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return "a finite float"


def real_arg(value: Any, name: str, where: str, lo: float | None = None, hi: float | None = None, *,
             lo_open: bool = False, hi_open: bool = False, want: str | None = None, numpy: bool = True,
             type_error: bool = False) -> float:
    """A finite real number (not a bool, not NaN or inf) within the given bounds, as a Python float.

    `lo` / `hi` bound it, inclusive unless `lo_open` / `hi_open`; None leaves that side open.
    A value that is not a number is a TypeError when `type_error`, else a ValueError (each caller
    keeps the exception type its argument has always had); a NaN, an inf or a value out of bounds
    is a ValueError. The message says "must be {want}", `want` defaulting to the bounds as given
    ("in [0.0, 1.0)", "in (0, 1)", ">= 0", "> 0"), or "a finite float" when unbounded; for a value
    of the wrong type a bare bound reads "a float in [0.0, 1.0)", "a float >= 0", ..."""
    if want is None:
        want = _interval(lo, hi, lo_open, hi_open)
    if not is_real(value, numpy):
        typed = want if want.startswith(("a ", "an ")) else f"a float {want}"
        if type_error:
            raise TypeError(f"{where}: argument '{name}' must be {typed}, got {type(value).__name__} {value!r}")
        raise ValueError(_refuse(where, name, typed, value))
    out = float(value)
    ok = math.isfinite(out)
    if ok and lo is not None:
        ok = out > lo if lo_open else out >= lo
    if ok and hi is not None:
        ok = out < hi if hi_open else out <= hi
    if not ok:
        raise ValueError(_refuse(where, name, want, value))
    return out


def nonneg_real(value: Any, name: str, where: str, *, numpy: bool = True) -> float:
    """A finite real number >= 0 (a rate, a margin, a slope); ValueError "... must be a
    non-negative float, got ..." for anything else."""
    return real_arg(value, name, where, 0, want="a non-negative float", numpy=numpy)


def positive_real(value: Any, name: str, where: str, *, numpy: bool = True) -> float:
    """A finite real number > 0 (an epsilon, a norm bound); ValueError "... must be a positive
    float, got ..." for anything else."""
    return real_arg(value, name, where, 0, lo_open=True, want="a positive float", numpy=numpy)


def pair(value: Any, name: str, where: str, minimum: int = 0) -> tuple[int, int]:
    """Normalise an int or a pair of ints (kernel size, stride, padding, dilation), each >= minimum.

    TypeError "... must be an int or a pair of ints" for anything else; ValueError "... must be
    >= {minimum}" for a small one."""
    if is_int(value):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{where}: argument '{name}' must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(_refuse(where, name, f">= {minimum}", value))
    return out


def real_pair(value: Any, name: str, where: str, minimum: float = 0.0) -> tuple[float, float]:
    """A number or a pair of numbers (a range, a fraction per axis), each finite and >= minimum.

    TypeError "... must be a number or a pair of numbers" for anything else; ValueError "... must
    be finite and >= {minimum}" for a small or non-finite one."""
    if is_real(value):
        out = (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_real(v) for v in value):
        out = (float(value[0]), float(value[1]))
    else:
        raise TypeError(f"{where}: argument '{name}' must be a number or a pair of numbers, got {value!r}")
    if not all(math.isfinite(v) and v >= minimum for v in out):
        raise ValueError(_refuse(where, name, f"finite and >= {minimum}", value))
    return out


def numpy_dtype(dtype: Any, x: Any, name: str, where: str) -> np.dtype:
    """`dtype` (an array's) as a NumPy dtype; a TypeError naming the argument when NumPy cannot read
    it (a torch or JAX tensor that reached a check before being imported through the backend)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: argument '{name}' is a {type(x).__name__} of dtype {dtype}, which is not a NumPy "
                        "dtype; pass a NumPy or backend array, or convert it with gpunn.from_dlpack(x)") from None


def is_float_dtype(dtype: Any) -> bool:
    """A floating-point dtype: NumPy's (kind "f") or ml_dtypes' bfloat16 (kind "V" to NumPy),
    the 16-bit format of bf16 mixed precision."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt.name == "bfloat16"


def check_float_array(x: Any, name: str, where: str, ndim: int | tuple[int, ...] | None = None,
                      layout: str = "") -> None:
    """A floating-point array with a non-empty batch axis and the expected rank."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(f"{where}: argument '{name}' must be an array, got {type(x).__name__}")
    dtype = numpy_dtype(dtype, x, name, where)
    if not is_float_dtype(dtype):
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
        raise ValueError(f"{where}: argument '{name}' must be float32 or float64, got {dtype}; a float16 model "
                         "would underflow (Adam's eps is 0 in float16): keep the model in float32 and train in 16 "
                         "bits with mixed precision, compile(..., precision='bf16-mixed' or 'fp16-mixed')")
    raise TypeError(f"{where}: argument '{name}' must be float32 or float64, got {value!r}")


def axis_arg(value: Any, name: str, where: str) -> int:
    """An int naming an array axis (negative counts from the end); its range is checked at use,
    against the rank of the array it applies to (see check_axis)."""
    if not is_int(value):
        raise TypeError(_refuse(where, name, "an int", value))
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
    if getattr(x, "size", 0) == 0 or not is_float_dtype(x.dtype):
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
        if not is_int(s):
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
    """A finite real number (not a bool, not NaN or inf); >= minimum, or > minimum when strict.

    Unlike real_arg it words the two failures apart: TypeError / ValueError "... must be a finite
    float" for a non-number or a NaN / inf, then ValueError "... must be >= {minimum}" (or "a
    positive float (> {minimum})" when strict) for a small one."""
    out = real_arg(value, name, where, type_error=True)
    if minimum is not None and (out <= minimum if strict else out < minimum):
        want = f"a positive float (> {minimum:g})" if strict else f">= {minimum:g}"
        raise ValueError(_refuse(where, name, want, value))
    return out


#: the image layouts of the layers that read one: gpunn's (and PyTorch's) default, and Keras's
DATA_FORMATS = {"channels_first": "(N, C, H, W)", "channels_last": "(N, H, W, C)"}


def data_format_arg(value: Any, name: str, where: str) -> str:
    """"channels_first" or "channels_last" (any case, as Keras accepts), returned in lower case."""
    want = " or ".join(f"'{k}' {v}" for k, v in DATA_FORMATS.items())
    if not isinstance(value, str):
        raise TypeError(f"{where}: argument '{name}' must be {want}, got {type(value).__name__} {value!r}")
    out = value.lower()
    if out not in DATA_FORMATS:
        raise ValueError(_refuse(where, name, want, value))
    return out


def sample_weight_arg(value: Any, n: int, name: str, where: str) -> np.ndarray:
    """Per-sample weights as a host float64 array of shape (n,): finite, >= 0, not all zero
    (a weighted mean over weights that are all zero is 0 / 0)."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: argument '{name}' must be a 1-D NumPy array with one weight per sample, got "
                        f"{type(value).__name__}")
    if value.dtype.kind not in "iuf":
        raise TypeError(f"{where}: argument '{name}' must hold real numbers, got dtype {value.dtype}")
    if value.shape != (n,):
        raise ValueError(f"{where}: argument '{name}' must have shape ({n},), one weight per sample, got shape "
                         f"{value.shape}")
    out = value.astype(np.float64)
    if not np.isfinite(out).all() or (out < 0).any():
        raise ValueError(f"{where}: argument '{name}' must hold finite weights >= 0, got min {out.min()}, "
                         f"max {out.max()}")
    if not out.any():
        raise ValueError(f"{where}: argument '{name}' is all zeros; at least one sample needs a positive weight")
    return out


def class_weight_arg(value: Any, name: str, where: str) -> dict[int, float]:
    """A dict class index (an int >= 0) -> weight (a finite float >= 0), as Keras's fit takes."""
    if not isinstance(value, dict) or not value:
        got = repr(value) if isinstance(value, dict) else type(value).__name__
        raise TypeError(f"{where}: argument '{name}' must be a non-empty dict class index -> weight, got {got}")
    out: dict[int, float] = {}
    for key, weight in value.items():
        index = int_arg(key, f"{name}[{key!r}]", where, 0, want="keyed by a class index (an int >= 0)")
        out[index] = real_arg(weight, f"{name}[{key!r}]", where, 0, want="a finite weight >= 0")
    return out


def name_arg(value: Any, name: str, where: str) -> str:
    """A non-empty str naming something (a model input or output, a layer), at most 200 characters:
    the names key dicts of data and the logs ("<output>_loss")."""
    if not isinstance(value, str):
        raise TypeError(_refuse(where, name, "a non-empty str", value))
    if not value or len(value) > 200:
        raise ValueError(_refuse(where, name, "a non-empty str of at most 200 characters", value))
    return value
