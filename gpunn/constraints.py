"""Weight constraints, applied after each optimizer step: `kernel_constraint=` on Dense and Conv2D.

A constraint is a callable `c(w) -> w'`. Layers list theirs through `Layer.constraints()`
((parameter, constraint) pairs, recursively); `apply_constraints(model)` writes c(p.data) back
in place, which keeps optimizer views into flat buffers valid. An optimizer calls it (or loops
over model.constraints() itself) right after updating the weights.
"""
from __future__ import annotations

import math
from typing import Any

from gpunn.backend import get_backend


class Constraint:
    def __call__(self, w: Any) -> Any:
        raise NotImplementedError


class MaxNorm(Constraint):
    """Rescale each slice whose L2 norm over `axis` exceeds `max_value` back to that norm (Srebro
    et al.; used with dropout by Hinton et al. 2012). Keras's convention: axis=0 constrains the
    incoming weights of each unit of a Dense kernel (features, units); for a Conv2D kernel
    (filters, channels, kh, kw) use axis=(1, 2, 3)."""

    def __init__(self, max_value: float = 2.0, axis: int | tuple[int, ...] = 0) -> None:
        if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not math.isfinite(max_value) \
                or max_value <= 0:
            raise ValueError(f"MaxNorm: argument 'max_value' must be a positive float, got {max_value!r}")
        axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
        if not isinstance(axes, (tuple, list)) or not axes or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise TypeError(f"MaxNorm: argument 'axis' must be an int or a tuple of ints, got {axis!r}")
        self.max_value = float(max_value)
        self.axis = tuple(axes)

    def __call__(self, w: Any) -> Any:
        if any(a >= w.ndim or a < -w.ndim for a in self.axis):
            raise ValueError(f"MaxNorm: argument 'axis' {self.axis} is out of range for a weight of shape "
                             f"{tuple(w.shape)}")
        xp = get_backend().xp
        norm = xp.sqrt((w * w).sum(axis=self.axis, keepdims=True))
        # scale = 1 where the norm is within bounds; the maximum() guards the division at norm 0
        scale = xp.minimum(1.0, self.max_value / xp.maximum(norm, 1e-12))
        return (w * scale).astype(w.dtype, copy=False)

    def __repr__(self) -> str:
        return f"MaxNorm(max_value={self.max_value}, axis={self.axis})"


_BY_NAME = {"max_norm": MaxNorm, "maxnorm": MaxNorm}


def get_constraint(spec: str | Constraint | None) -> Constraint | None:
    if spec is None or isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    if callable(spec):
        return spec  # any w -> w' callable works
    raise ValueError(f"get_constraint: argument 'kernel_constraint' must be None, a Constraint, a callable or one "
                     f"of {sorted(_BY_NAME)}, got {spec!r}")


def apply_constraints(model: Any) -> None:
    """Project every constrained parameter of `model` in place; call after each optimizer step."""
    for param, constraint in model.constraints():
        param.data[...] = constraint(param.data)
