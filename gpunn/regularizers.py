"""Weight penalties: L1, L2 and L1L2, given as `kernel_regularizer=` to Dense and Conv2D.

Keras's definitions: L1(l) = l * sum|w|, L2(l) = l * sum(w^2) (no 1/2, so its gradient is 2*l*w).

How the penalty reaches training:
- its *gradient* is added to the weight's `param.grad` by the layer's own backward(), once per
  backward call, so any optimizer sees the full gradient without extra calls;
- its *value* is not part of a Loss's forward(); add `regularization_loss(model)` (or
  `model.regularization_loss()` on a Sequential) to the data loss when reporting the objective.

Placement: a regularizer computes on the current backend. Its callers make that the layer's own:
a layer's backward runs with its backend current (gpunn.layers.base), and regularization_loss
evaluates each layer's penalty with that layer's backend current.
"""
from __future__ import annotations

import contextlib
from typing import Any

from gpunn._checks import nonneg_real
from gpunn.backend import Backend, get_backend, use_backend
from gpunn.backend.values import host_scalar


class Regularizer:
    """`penalty(w)` -> float, `gradient(w)` -> array like w, both on the current backend (which
    gpunn's callers make the weight's layer's, see the module docstring)."""

    def penalty(self, w: Any) -> float:
        raise NotImplementedError

    def gradient(self, w: Any) -> Any:
        raise NotImplementedError

    def __call__(self, w: Any) -> float:
        return self.penalty(w)


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = nonneg_real(l1, "l1", type(self).__name__, numpy=False)
        self.l2 = nonneg_real(l2, "l2", type(self).__name__, numpy=False)

    def penalty(self, w: Any) -> float:
        xp = get_backend().xp
        total = 0.0
        if self.l1:
            total += self.l1 * host_scalar(xp.abs(w).sum(dtype=_acc(w)))
        if self.l2:
            total += self.l2 * host_scalar((w * w).sum(dtype=_acc(w)))
        return total

    def gradient(self, w: Any) -> Any:
        xp = get_backend().xp
        grad = w * w.dtype.type(2.0 * self.l2)
        if self.l1:
            grad += w.dtype.type(self.l1) * xp.sign(w)  # subgradient 0 at w == 0
        return grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1(L1L2):
    def __init__(self, l: float = 0.01) -> None:  # noqa: E741 (Keras's name for the rate)
        super().__init__(l1=nonneg_real(l, "l", "L1", numpy=False))

    def __repr__(self) -> str:
        return f"L1(l={self.l1})"


class L2(L1L2):
    def __init__(self, l: float = 0.01) -> None:  # noqa: E741
        super().__init__(l2=nonneg_real(l, "l", "L2", numpy=False))

    def __repr__(self) -> str:
        return f"L2(l={self.l2})"


def _acc(w: Any) -> Any:
    """Sum in float32 or wider."""
    import numpy as np
    return np.promote_types(w.dtype, np.float32)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get_regularizer(spec: str | Regularizer | None) -> Regularizer | None:
    """A regularizer from None, an instance, or a name ('l1', 'l2', 'l1_l2' with Keras's default 0.01)."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        key = spec.lower()
        return L1L2(0.01, 0.01) if _BY_NAME[key] is L1L2 else _BY_NAME[key]()
    raise ValueError(f"get_regularizer: argument 'kernel_regularizer' must be None, a Regularizer or one of "
                     f"{sorted(_BY_NAME)}, got {spec!r}")


def regularization_loss(model: Any) -> float:
    """The sum of every weight penalty in `model` and its sublayers (0.0 when there are none),
    each computed with its layer's backend current."""
    total = 0.0
    reg = getattr(model, "kernel_regularizer", None)
    weight = getattr(model, "params", {}).get("weight")
    if reg is not None and weight is not None:
        owner = getattr(model, "backend", None)
        placed = isinstance(owner, Backend) and owner is not get_backend()
        with use_backend(owner) if placed else contextlib.nullcontext():
            total += reg.penalty(weight.data)
    for child in getattr(model, "children", {}).values():
        total += regularization_loss(child)
    return total
