"""ReLU as a backend op: the most common activation gets a one-pass kernel where a backend has one.

relu_forward(x) -> y = max(x, 0), NaN propagating (as np.maximum and torch.relu); x floating point,
  float16 and ml_dtypes.bfloat16 included;
relu_backward(dy, y) -> dx = dy where y > 0, else 0 (y is the forward output, so no mask is kept).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend.ops.cast import HALF_DTYPES


def check_relu_grad(dy: Any, y: Any) -> None:
    """dy must have y's shape and dtype (no broadcasting: a mismatch is a caller's bug)."""
    if getattr(dy, "shape", None) != getattr(y, "shape", None):
        raise ValueError(f"relu_backward: argument 'dy' must have the shape of 'y' {getattr(y, 'shape', None)}, "
                         f"got {getattr(dy, 'shape', None)}")
    if dy.dtype != y.dtype:
        raise TypeError(f"relu_backward: argument 'dy' must have the dtype of 'y' ({y.dtype}), got {dy.dtype}")


class ActivationOps:
    xp: Any

    def relu_forward(self, x: Any) -> Any:
        dtype = getattr(x, "dtype", None)
        if getattr(dtype, "kind", None) != "f" and not (dtype is not None and np.dtype(dtype) in HALF_DTYPES):
            raise TypeError(f"relu_forward: argument 'x' must be a floating-point array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        return self.xp.maximum(x, x.dtype.type(0))

    def relu_backward(self, dy: Any, y: Any) -> Any:
        check_relu_grad(dy, y)
        return dy * (y > 0)
