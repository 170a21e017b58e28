"""Losses: `forward(pred, target)` returns a Python float, `backward()` returns dL/dpred.

Reduction is the mean over the batch (MSE: over all elements, as in PyTorch). Class-label
targets may be ints or floats holding integer values; one-hot (or soft) targets are accepted
where they make sense.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import check_float_array
from gpunn.backend import get_backend


class Loss:
    def __init__(self) -> None:
        self._cache: Any = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, pred: Any, target: Any) -> float:
        return self.forward(pred, target)

    def forward(self, pred: Any, target: Any) -> float:
        raise NotImplementedError

    def backward(self) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{self.name}.backward: called before forward(); run forward first")
        return self._backward()

    def _backward(self) -> Any:
        raise NotImplementedError

    # -- shared validation ----------------------------------------------------------------------
    def _pred(self, pred: Any, ndim: int | tuple[int, ...] | None = None, layout: str = "") -> Any:
        be = get_backend()
        if isinstance(pred, (list, tuple)):
            pred = np.asarray(pred)
        check_float_array(pred, "pred", f"{self.name}.forward", ndim, layout)
        return pred if be.is_native(pred) else be.asarray(pred)

    def _target(self, target: Any, dtype: Any = None) -> Any:
        be = get_backend()
        if isinstance(target, (list, tuple)) or not hasattr(target, "shape"):
            target = np.asarray(target)
        target = target if be.is_native(target) else be.asarray(target)
        if target.dtype.kind == "f" and bool(be.xp.isnan(target).any()):
            raise ValueError(f"{self.name}.forward: argument 'target' contains NaN")
        if target.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}.forward: argument 'target' must be numeric, got dtype {target.dtype}")
        return target.astype(dtype, copy=False) if dtype is not None else target


def class_indices(target: Any, num_classes: int, where: str) -> Any:
    """Validate class labels (ints, or floats holding integers) in [0, num_classes)."""
    xp = get_backend().xp
    if target.dtype.kind == "f":
        if bool((target != xp.round(target)).any()):
            raise ValueError(f"{where}: argument 'target' holds non-integer class labels; expected integers in "
                             f"[0, {num_classes}) or one-hot rows")
    labels = target.astype(np.int64)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{where}: argument 'target' has labels outside [0, {num_classes}): "
                         f"min {int(labels.min())}, max {int(labels.max())}")
    return labels


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy on logits via log-sum-exp; targets are class labels (N,) or probabilities (N, C)."""

    def forward(self, pred: Any, target: Any) -> float:
        where = f"{self.name}.forward"
        pred = self._pred(pred, 2, "(N, classes)")
        target = self._target(target)
        xp = get_backend().xp
        n, c = pred.shape
        shifted = pred - pred.max(axis=1, keepdims=True)
        log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_z
        if target.ndim == 1:
            if target.shape[0] != n:
                raise ValueError(f"{where}: argument 'target' must have {n} labels to match pred {pred.shape}, "
                                 f"got shape {target.shape}")
            labels = class_indices(target, c, where)
            probs = xp.zeros_like(pred)
            probs[xp.arange(n), labels] = 1
        elif target.shape == pred.shape:
            probs = target.astype(pred.dtype, copy=False)
        else:
            raise ValueError(f"{where}: argument 'target' must be labels of shape ({n},) or one-hot of shape "
                             f"{pred.shape}, got shape {target.shape}")
        loss = -(probs * log_p).sum() / n
        self._cache = (log_p, probs)
        return float(loss)

    def _backward(self) -> Any:
        log_p, probs = self._cache
        n = log_p.shape[0]
        return (get_backend().xp.exp(log_p) - probs) / log_p.dtype.type(n)


class MSE(Loss):
    """Mean squared error over all elements."""

    def forward(self, pred: Any, target: Any) -> float:
        pred = self._pred(pred)
        target = self._target(target, pred.dtype)
        if target.shape != pred.shape:
            raise ValueError(f"{self.name}.forward: argument 'target' must have the shape of pred {pred.shape}, "
                             f"got {target.shape}")
        diff = pred - target
        self._cache = diff
        return float((diff * diff).mean())

    def _backward(self) -> Any:
        diff = self._cache
        return diff * diff.dtype.type(2.0 / diff.size)


_BY_NAME = {
    "softmax_cross_entropy": SoftmaxCrossEntropy, "categorical_crossentropy": SoftmaxCrossEntropy,
    "sparse_categorical_crossentropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
    "mse": MSE, "mean_squared_error": MSE,
}


def register_loss(name: str, cls: type) -> None:
    _BY_NAME[name.lower()] = cls


def get_loss(spec: str | Loss) -> Loss:
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    raise ValueError(f"get_loss: argument 'loss' must be a Loss or one of {sorted(_BY_NAME)}, got {spec!r}")
