"""Small helpers with Keras's names: `to_categorical`.

It sits next to gpunn.metrics in the stack and needs only NumPy and gpunn._checks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import positive_int
from gpunn.backend import to_host


def to_categorical(y: Any, num_classes: int | None = None, dtype: Any = "float32") -> np.ndarray:
    """One-hot rows for integer class labels, as Keras's `to_categorical`: labels of shape S
    (a trailing axis of size 1 is dropped, so (N, 1) counts as (N,)) give shape S + (num_classes,),
    a NumPy array of `dtype`. `num_classes` defaults to max(y) + 1.

    Labels may be ints, or floats holding integers; they must lie in [0, num_classes)."""
    where = "to_categorical"
    if isinstance(y, (str, bytes)) or y is None:
        raise TypeError(f"{where}: argument 'y' must be an array of integer class labels, got {type(y).__name__}")
    labels = to_host(y)  # a CuPy array or a tensor too: the result is a host array, as Keras's is
    if labels.dtype.kind not in "iuf":
        raise TypeError(f"{where}: argument 'y' must hold integer class labels, got dtype {labels.dtype}")
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: argument 'dtype' must be a NumPy dtype such as 'float32', got {dtype!r}") from None
    if out_dtype.kind not in "fiub":
        raise TypeError(f"{where}: argument 'dtype' must be a numeric dtype, got {out_dtype}")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = labels.reshape(-1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)):
            raise ValueError(f"{where}: argument 'y' holds non-integer class labels; expected integers >= 0")
    flat = flat.astype(np.int64)
    if flat.size and flat.min() < 0:
        raise ValueError(f"{where}: argument 'y' holds negative class labels (min {int(flat.min())}); expected "
                         "integers >= 0")
    if num_classes is None:
        if flat.size == 0:
            raise ValueError(f"{where}: argument 'num_classes' is required when 'y' holds no labels")
        num_classes = int(flat.max()) + 1
    else:
        num_classes = positive_int(num_classes, "num_classes", where)
        if flat.size and flat.max() >= num_classes:
            raise ValueError(f"{where}: argument 'y' has labels outside [0, {num_classes}): max {int(flat.max())}; "
                             f"raise 'num_classes' or fix the labels")
    out = np.zeros((flat.size, num_classes), dtype=out_dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(tuple(shape) + (num_classes,))
