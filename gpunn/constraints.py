"""Weight constraints, applied after each optimizer step: `kernel_constraint=` on Dense and Conv2D.

A constraint is a callable `c(w) -> w'`. Layers list theirs through `Layer.constraints()`
((parameter, constraint) pairs, recursively); `apply_constraints(model)` writes c(p.data) back
in place, which keeps optimizer views into flat buffers valid. An optimizer calls it (or loops
over model.constraints() itself) right after updating the weights.

Placement: a constraint computes on the current backend. Its callers make that the weight's
owner's: an optimizer applies constraints with its backend current, apply_constraints with the
model's.
"""
from __future__ import annotations

import contextlib
from typing import Any

from gpunn._checks import is_int, positive_real
from gpunn.backend import Backend, get_backend, use_backend


class Constraint:
    def __call__(self, w: Any) -> Any:
        raise NotImplementedError


class MaxNorm(Constraint):
    """Rescale each slice whose L2 norm over `axis` exceeds `max_value` back to that norm (Srebro
    et al.; used with dropout by Hinton et al. 2012). Keras's convention: axis=0 constrains the
    incoming weights of each unit of a Dense kernel (features, units); for a Conv2D kernel
    (filters, channels, kh, kw) use axis=(1, 2, 3)."""

    def __init__(self, max_value: float = 2.0, axis: int | tuple[int, ...] = 0) -> None:
        self.max_value = positive_real(max_value, "max_value", "MaxNorm", numpy=False)
        axes = (axis,) if is_int(axis, numpy=False) else axis
        if not isinstance(axes, (tuple, list)) or not axes or not all(is_int(a, numpy=False) for a in axes):
            raise TypeError(f"MaxNorm: argument 'axis' must be an int or a tuple of ints, got {axis!r}")
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
    """Project every constrained parameter of `model` in place, with the model's backend current;
    call after each optimizer step."""
    owner = getattr(model, "backend", None)
    placed = isinstance(owner, Backend) and owner is not get_backend()
    with use_backend(owner) if placed else contextlib.nullcontext():
        for param, constraint in model.constraints():
            param.data[...] = constraint(param.data)
