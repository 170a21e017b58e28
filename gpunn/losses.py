"""Losses: `forward(pred, target)` returns the loss, `backward()` returns dL/dpred.

Every loss first computes an unreduced loss (per element, or per sample for the class losses
and SumSquaredError) and its gradient, then reduces it by `reduction`:
- "mean" (the default): the batch mean. Elementwise losses (MSE, MAE, Huber, BinaryCrossEntropy)
  average over all elements, as PyTorch and Keras do; per-sample losses average over N.
- "sum": the sum. SumSquaredError defaults to it (the seeds' 1/2 * sum (t - o)^2).
- "none": forward returns the unreduced array (on the current backend) and backward(dloss)
  takes the upstream gradient of that array (ones when omitted, i.e. the gradient of its sum).
With "mean" and "sum", forward returns a Python float and backward(dloss=1.0) takes an optional
scalar multiplier.

Class-label targets may be ints or floats holding integer values; one-hot (or soft) targets are
accepted where they make sense. Sums are accumulated in float32 or wider.

Placement: a loss computes on the current backend, and moves pred, target and dloss there from
any backend (or the host). A model's training loop (fit, evaluate, train_on_batch, ...) runs with
the model's backend current, so its loss runs where the model does; to call a loss by hand on the
output of a model placed elsewhere, wrap it in `gpunn.use_backend(model.backend)`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpunn._checks import check_float_array, nonneg_real, positive_real, real_arg
from gpunn.backend import get_backend, to_host
from gpunn.backend.base import native_byte_order

REDUCTIONS = ("mean", "sum", "none")


def _acc(dtype: Any) -> np.dtype:
    return np.promote_types(np.dtype(dtype), np.float32)


class Loss:
    """Base class: subclasses implement `forward(pred, target)` (see the module docstring).

    `from_logits` declares what `pred` is, for whoever reads the model's output next to the loss
    (compile() gives it to the metrics: binary_accuracy thresholds logits at 0, other values at
    0.5). True: logits, pre-activation scores that the loss maps to probabilities itself
    (SoftmaxCrossEntropy, BinaryCrossEntropy by default). False, the default a user's subclass
    inherits: values compared with the target as they are (regression outputs, probabilities,
    hinge scores). A subclass that takes logits sets `from_logits = True`.

    `output_kind` says how to turn `pred` into what the loss compares with the target, for whoever
    needs probabilities (gpunn.Ensemble): "logits" (softmax over the last axis), "binary_logits"
    (sigmoid), "probabilities" or "values" (as they are; the default)."""

    default_reduction = "mean"
    from_logits: bool = False
    output_kind: str = "values"

    def __init__(self, reduction: str | None = None) -> None:
        reduction = self.default_reduction if reduction is None else reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f"{self.name}: argument 'reduction' must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache: Any = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(self, pred: Any, target: Any) -> Any:
        return self.forward(pred, target)

    def forward(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError

    def backward(self, dloss: Any = None) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{self.name}.backward: called before forward(); run forward first")
        grad, per_shape, denom = self._cache
        if self.reduction == "none":
            if dloss is None:
                return grad
            be = get_backend()
            d = dloss if be.is_native(dloss) else be.asarray(to_host(dloss))
            if tuple(d.shape) != tuple(per_shape):
                raise ValueError(f"{self.name}.backward: argument 'dloss' must have the shape of the unreduced loss "
                                 f"{tuple(per_shape)}, got {tuple(d.shape)}")
            d = d.astype(grad.dtype, copy=False)
            return grad * d.reshape(tuple(per_shape) + (1,) * (grad.ndim - len(per_shape)))
        scale = 1.0 if dloss is None else float(dloss)
        if self.reduction == "mean":
            scale /= denom
        return grad * grad.dtype.type(scale) if scale != 1.0 else grad

    # -- shared pieces ----------------------------------------------------------------------------
    def _finish(self, per: Any, grad: Any, denom: int) -> Any:
        """Keep the unreduced gradient and reduce the unreduced loss `per`."""
        self._cache = (grad, tuple(per.shape), denom)
        if self.reduction == "none":
            return per
        total = float(per.sum(dtype=_acc(per.dtype)))
        return total / denom if self.reduction == "mean" else total

    def _pred(self, pred: Any, ndim: int | tuple[int, ...] | None = None, layout: str = "") -> Any:
        be = get_backend()
        if isinstance(pred, (list, tuple)):
            pred = np.asarray(pred)
        check_float_array(pred, "pred", f"{self.name}.forward", ndim, layout)
        return pred if be.is_native(pred) else be.asarray(native_byte_order(to_host(pred)))

    def _class_inputs(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Validated (N, classes) scores and their raw targets, for the class losses."""
        return self._pred(pred, 2, "(N, classes)"), self._target(target)

    def _target(self, target: Any, dtype: Any = None) -> Any:
        be = get_backend()
        if isinstance(target, (list, tuple)) or not hasattr(target, "shape"):
            target = np.asarray(target)
        target = target if be.is_native(target) else be.asarray(native_byte_order(to_host(target)))
        if target.dtype.kind == "f" and bool(be.xp.isnan(target).any()):
            raise ValueError(f"{self.name}.forward: argument 'target' contains NaN")
        if target.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}.forward: argument 'target' must be numeric, got dtype {target.dtype}")
        return target.astype(dtype, copy=False) if dtype is not None else target

    def _same_shape_target(self, pred: Any, target: Any) -> Any:
        target = self._target(target, pred.dtype)
        if target.shape != pred.shape:
            raise ValueError(f"{self.name}.forward: argument 'target' must have the shape of pred {pred.shape}, "
                             f"got {target.shape}")
        return target


def class_indices(target: Any, num_classes: int, where: str) -> Any:
    """Validate class labels (ints, or floats holding integers) in [0, num_classes).

    The range is checked before the cast to int64, which would turn Inf or 1e30 into garbage."""
    xp = get_backend().xp
    if target.dtype.kind == "f":
        if not bool(xp.isfinite(target).all()) or bool((target != xp.round(target)).any()):
            raise ValueError(f"{where}: argument 'target' holds non-integer class labels; expected integers in "
                             f"[0, {num_classes}) or one-hot rows")
    if target.size:
        lo, hi = target.min(), target.max()
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{where}: argument 'target' has labels outside [0, {num_classes}): "
                             f"min {lo.item()}, max {hi.item()}")
    return target.astype(np.int64)


def check_probability_rows(target: Any, where: str) -> None:
    """Soft (or one-hot) targets (N, C): finite, non-negative, each row summing to 1.

    The sum is allowed 4 C ulps of the target's dtype, and at least 1e-3: rows written in
    float32 (or float16) arithmetic are off by rounding, rows from the wrong array are not."""
    xp = get_backend().xp
    if target.dtype.kind == "f" and not bool(xp.isfinite(target).all()):
        raise ValueError(f"{where}: argument 'target' holds probability rows with Inf; expected finite values")
    if target.size == 0:
        return
    low = target.min()
    if low < 0:
        raise ValueError(f"{where}: argument 'target' holds probability rows with negative entries (min "
                         f"{low.item()}); expected values >= 0 with each row summing to 1")
    eps = float(np.finfo(target.dtype).eps) if target.dtype.kind == "f" else 0.0
    tol = max(1e-3, 4 * target.shape[1] * eps)
    sums = target.sum(axis=1, dtype=_acc(target.dtype))
    off = xp.abs(sums - 1)
    worst = int(off.argmax())
    if float(off[worst]) > tol:
        raise ValueError(f"{where}: argument 'target' holds probability rows that do not sum to 1 (within {tol:.3g}): "
                         f"row {worst} sums to {float(sums[worst]):.6g}; pass class labels (N,) or one-hot / "
                         "soft rows that sum to 1")


def _class_probs(target: Any, pred: Any, where: str) -> Any:
    """Labels (N,) -> one-hot rows; (N, C) probability rows pass through."""
    xp = get_backend().xp
    n, c = pred.shape
    if target.ndim == 1:
        if target.shape[0] != n:
            raise ValueError(f"{where}: argument 'target' must have {n} labels to match pred {pred.shape}, "
                             f"got shape {target.shape}")
        labels = class_indices(target, c, where)
        probs = xp.zeros_like(pred)
        probs[xp.arange(n), labels] = 1
        return probs
    if target.shape == pred.shape:
        check_probability_rows(target, where)
        return target.astype(pred.dtype, copy=False)
    raise ValueError(f"{where}: argument 'target' must be labels of shape ({n},) or one-hot of shape "
                     f"{pred.shape}, got shape {target.shape}")


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy on logits via log-sum-exp; targets are class labels (N,) or probabilities (N, C).

    `label_smoothing` = eps mixes the target with the uniform distribution, as PyTorch does:
    q = (1 - eps) * target + eps / C."""

    from_logits = True
    output_kind = "logits"

    def __init__(self, label_smoothing: float = 0.0, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.label_smoothing = real_arg(label_smoothing, "label_smoothing", self.name, 0, 1, numpy=False)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        xp = get_backend().xp
        n, c = pred.shape
        shifted = pred - pred.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        probs = _class_probs(target, pred, where)
        if self.label_smoothing:
            eps = self.label_smoothing
            probs = probs * pred.dtype.type(1.0 - eps) + pred.dtype.type(eps / c)
        per = -(probs * log_p).sum(axis=1)
        # d/dz of -sum q log softmax(z) is softmax(z) * sum(q) - q (sum(q) = 1 for proper targets)
        grad = xp.exp(log_p) * probs.sum(axis=1, keepdims=True) - probs
        return self._finish(per, grad, n)


class MSE(Loss):
    """Mean squared error over all elements."""

    from_logits = False

    def forward(self, pred: Any, target: Any) -> Any:
        pred = self._pred(pred)
        diff = pred - self._same_shape_target(pred, target)
        return self._finish(diff * diff, diff * diff.dtype.type(2.0), diff.size)


class MAE(Loss):
    """Mean absolute error over all elements; the subgradient at 0 is 0."""

    from_logits = False

    def forward(self, pred: Any, target: Any) -> Any:
        pred = self._pred(pred)
        diff = pred - self._same_shape_target(pred, target)
        xp = get_backend().xp
        return self._finish(xp.abs(diff), xp.sign(diff), diff.size)


class Huber(Loss):
    """0.5 d^2 for |d| <= delta, else delta * (|d| - 0.5 delta): PyTorch's HuberLoss, mean over elements."""

    from_logits = False

    def __init__(self, delta: float = 1.0, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.delta = positive_real(delta, "delta", self.name, numpy=False)

    def forward(self, pred: Any, target: Any) -> Any:
        pred = self._pred(pred)
        diff = pred - self._same_shape_target(pred, target)
        xp = get_backend().xp
        a = xp.abs(diff)
        d = diff.dtype.type(self.delta)
        per = xp.where(a <= d, 0.5 * diff * diff, d * (a - 0.5 * d))
        return self._finish(per, xp.clip(diff, -d, d), diff.size)


class SumSquaredError(Loss):
    """The seeds' E = 1/2 * sum (target - out)^2. Unreduced it is one value per sample (summed over
    every non-batch axis); the default reduction is "sum" over the batch, "mean" divides by N."""

    default_reduction = "sum"
    from_logits = False

    def forward(self, pred: Any, target: Any) -> Any:
        pred = self._pred(pred)
        diff = pred - self._same_shape_target(pred, target)
        per = 0.5 * (diff * diff).reshape(diff.shape[0], -1).sum(axis=1)
        return self._finish(per, diff, diff.shape[0])


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy for multi-label outputs, mean over all elements by default.

    from_logits=True (the default) takes logits z and uses the stable form
    max(z, 0) - z t + log1p(exp(-|z|)); from_logits=False takes probabilities in [0, 1], clipped
    to [eps, 1 - eps] as Keras does (the gradient is 0 where the clip is active). Targets have
    pred's shape and values in [0, 1] (soft labels allowed). The instance's `from_logits` is the
    argument's, so compile() reads probabilities as probabilities."""

    from_logits = True

    def __init__(self, from_logits: bool = True, eps: float = 1e-7, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.from_logits = bool(from_logits)
        self.output_kind = "binary_logits" if self.from_logits else "probabilities"
        self.eps = real_arg(eps, "eps", self.name, 0, 0.5, lo_open=True, hi_open=True, numpy=False)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred = self._pred(pred)
        t = self._same_shape_target(pred, target)
        xp = get_backend().xp
        if t.size and (bool((t < 0).any()) or bool((t > 1).any())):
            raise ValueError(f"{where}: argument 'target' must hold values in [0, 1], got min {float(t.min())}, "
                             f"max {float(t.max())}")
        if self.from_logits:
            e = xp.exp(-xp.abs(pred))
            per = xp.maximum(pred, 0) - pred * t + xp.log1p(e)
            sig = xp.where(pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(pred.dtype, copy=False)
            return self._finish(per, sig - t, pred.size)
        if bool(xp.isnan(pred).any()) or bool((pred < 0).any()) or bool((pred > 1).any()):
            raise ValueError(f"{where}: argument 'pred' must hold probabilities in [0, 1] with from_logits=False")
        eps = pred.dtype.type(self.eps)
        p = xp.clip(pred, eps, 1 - eps)
        per = -(t * xp.log(p) + (1 - t) * xp.log1p(-p))
        inside = (pred > eps) & (pred < 1 - eps)
        grad = xp.where(inside, (p - t) / (p * (1 - p)), 0).astype(pred.dtype, copy=False)
        return self._finish(per, grad, pred.size)


class MulticlassHinge(Loss):
    """The multiclass SVM loss (Weston-Watkins form, as in CS231n): per sample
    L_i = sum over j != y_i of max(0, s_j - s_{y_i} + margin), averaged over the batch.
    Targets are labels (N,) or one-hot rows (N, C). The scores are not logits of a probability
    (no sigmoid or softmax maps them), so from_logits is False."""

    from_logits = False

    def __init__(self, margin: float = 1.0, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.margin = nonneg_real(margin, "margin", self.name, numpy=False)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        xp = get_backend().xp
        n, c = pred.shape
        if target.ndim == 2 and target.shape == pred.shape:
            is_one_hot = bool(((target == 0) | (target == 1)).all()) and bool((target.sum(axis=1) == 1).all())
            if not is_one_hot:
                raise ValueError(f"{where}: argument 'target' of shape {pred.shape} must hold one-hot rows")
            labels = target.argmax(axis=1)
        elif target.ndim == 1 and target.shape[0] == n:
            labels = class_indices(target, c, where)
        else:
            raise ValueError(f"{where}: argument 'target' must be labels of shape ({n},) or one-hot of shape "
                             f"{pred.shape}, got shape {target.shape}")
        rows = xp.arange(n)
        correct = pred[rows, labels][:, None]
        margins = pred - correct + pred.dtype.type(self.margin)
        margins[rows, labels] = 0
        active = margins > 0
        per = (margins * active).sum(axis=1)
        grad = active.astype(pred.dtype)
        grad[rows, labels] = -active.sum(axis=1).astype(pred.dtype)
        return self._finish(per, grad, n)


_BY_NAME = {
    "softmax_cross_entropy": SoftmaxCrossEntropy, "categorical_crossentropy": SoftmaxCrossEntropy,
    "sparse_categorical_crossentropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
    "mse": MSE, "mean_squared_error": MSE, "mae": MAE, "mean_absolute_error": MAE, "huber": Huber,
    "sse": SumSquaredError, "sum_squared_error": SumSquaredError,
    "binary_crossentropy": BinaryCrossEntropy, "binary_cross_entropy": BinaryCrossEntropy, "bce": BinaryCrossEntropy,
    "hinge": MulticlassHinge, "multiclass_hinge": MulticlassHinge, "svm": MulticlassHinge,
}


def register_loss(name: str, cls: type) -> None:
    _BY_NAME[name.lower()] = cls


def get_loss(spec: str | Loss) -> Loss:
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    raise ValueError(f"get_loss: argument 'loss' must be a Loss or one of {sorted(_BY_NAME)}, got {spec!r}")
