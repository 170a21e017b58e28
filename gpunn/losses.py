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
accepted where they make sense. A regression loss (MSE, MAE, Huber, SumSquaredError) and
BinaryCrossEntropy take targets of shape (N,) for an output of shape (N, 1), as Keras does.
Sums are accumulated in float32 or wider.

The cross-entropies: `SoftmaxCrossEntropy` (logits), `CategoricalCrossentropy` and
`SparseCategoricalCrossentropy` (Keras's names: `from_logits=False` by default, i.e.
probabilities from a softmax output), `NLLLoss` (PyTorch's: log-probabilities from a
LogSoftmax), `BinaryCrossEntropy`. `match_output(loss, activation)` returns the loss to train
with given what the model's output ends in, so that a softmax output and a loss on logits are
never a silent double softmax (compile calls it for each output).

Placement: a loss computes on the current backend, and moves pred, target and dloss there from
any backend (or the host). A model's training loop (fit, evaluate, train_on_batch, ...) runs with
the model's backend current, so its loss runs where the model does; to call a loss by hand on the
output of a model placed elsewhere, wrap it in `gpunn.use_backend(model.backend)`.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np

from gpunn._checks import check_float_array, nonneg_real, positive_real, real_arg
from gpunn.backend import get_backend, is_foreign_array, to_host
from gpunn.backend.values import host_scalar
from gpunn.backend.base import native_byte_order
from gpunn.backend.ops.cast import is_half

REDUCTIONS = ("mean", "sum", "none")


def _acc(dtype: Any) -> np.dtype:
    return np.promote_types(np.dtype(dtype), np.float32)


class Loss:
    """Base class of every loss, and the one to subclass for a custom loss.

    The contract: `forward(pred, target)` returns the loss - a Python float for reduction "mean"
    or "sum", the unreduced array (on the current backend) for "none" - and `backward(dloss=None)`
    returns dL/dpred for the last forward, an array of pred's shape. `reduction` is set by the
    constructor (`default_reduction` when None).

    A subclass either implements both methods itself, or (simpler) computes in `forward` the
    unreduced loss `per` and its gradient `grad` (d per / d pred, elementwise) and returns
    `self.reduce(per, grad, count)`: the inherited `backward` then honours `reduction` ("mean"
    divides by `count`, the number of values averaged) and the upstream `dloss`. `check_pred`
    and `check_target` validate and place the inputs as the built-in losses do.

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
        raise NotImplementedError(f"{self.name}.forward: a Loss subclass implements forward(pred, target) "
                                  "(see the Loss docstring)")

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

    # -- for subclasses ---------------------------------------------------------------------------
    def reduce(self, per: Any, grad: Any, count: float) -> Any:
        """Reduce the unreduced loss `per` by `self.reduction` and keep `grad` (d per / d pred,
        of pred's shape) for `backward`. `count` is what "mean" divides by: per.size for an
        elementwise loss, N for one value per sample (or a sum of weights). Returns forward's value."""
        self._cache = (grad, tuple(per.shape), count)
        if self.reduction == "none":
            return per
        total = host_scalar(per.sum(dtype=_acc(per.dtype)))  # a 0-d device array in a captured step
        return total / count if self.reduction == "mean" else total

    def check_pred(self, pred: Any, ndim: int | tuple[int, ...] | None = None, layout: str = "") -> Any:
        """`pred` validated (a float array with a non-empty batch, of rank `ndim` when given,
        described as `layout` in errors) and placed on the current backend."""
        return self._pred(pred, ndim, layout)

    def check_target(self, target: Any, pred: Any) -> Any:
        """`target` validated (numeric, no NaN) as an array of pred's shape and dtype on the current
        backend; (N,) for a pred of shape (N, 1) is accepted (Keras's habit), other shapes are errors."""
        return self._same_shape_target(pred, target)

    # -- shared pieces ----------------------------------------------------------------------------
    def _finish(self, per: Any, grad: Any, denom: float) -> Any:
        return self.reduce(per, grad, denom)

    def _pred(self, pred: Any, ndim: int | tuple[int, ...] | None = None, layout: str = "") -> Any:
        be = get_backend()
        if isinstance(pred, (list, tuple)):
            pred = np.asarray(pred)
        elif is_foreign_array(pred):  # a torch/JAX tensor, in place when on this device (DLPack)
            pred = be.asarray(pred, where=f"{self.name}.forward")
        check_float_array(pred, "pred", f"{self.name}.forward", ndim, layout)
        pred = pred if be.is_native(pred) else be.asarray(native_byte_order(to_host(pred)))
        if is_half(pred):  # a mixed-precision model's float16/bfloat16 output: losses are float32
            pred = pred.astype(np.float32)
        return pred

    def _class_inputs(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Validated (N, classes) scores and their raw targets, for the class losses."""
        return self._pred(pred, 2, "(N, classes)"), self._target(target)

    def _target(self, target: Any, dtype: Any = None) -> Any:
        be = get_backend()
        if is_foreign_array(target):  # torch int64 labels, a JAX array: through DLPack, no copy on the host
            target = be.asarray(target, where=f"{self.name}.forward")
        elif isinstance(target, (list, tuple)) or not hasattr(target, "shape"):
            target = np.asarray(target)
        target = target if be.is_native(target) else be.asarray(native_byte_order(to_host(target)))
        if target.dtype.kind == "f" and data_checks() and bool(be.xp.isnan(target).any()):
            raise ValueError(f"{self.name}.forward: argument 'target' contains NaN")
        if target.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}.forward: argument 'target' must be numeric, got dtype {target.dtype}")
        return target.astype(dtype, copy=False) if dtype is not None else target

    def _same_shape_target(self, pred: Any, target: Any) -> Any:
        target = self._target(target, pred.dtype)
        if target.shape != pred.shape:
            if pred.ndim == 2 and pred.shape[1] == 1 and tuple(target.shape) == (pred.shape[0],):
                return target.reshape(pred.shape)  # Keras's habit: targets (N,) for an output (N, 1)
            raise ValueError(f"{self.name}.forward: argument 'target' must have the shape of pred {pred.shape}, "
                             f"got {target.shape}")
        return target


def data_checks() -> bool:
    """Whether checks that read the data back (NaN targets, label ranges, probability rows) run:
    always, except while a step is being captured as a CUDA graph, where a host read is an error
    (a captured step checks its batches at its first, eager, run of each shape)."""
    return not get_backend().capturing


def class_indices(target: Any, num_classes: int, where: str) -> Any:
    """Validate class labels (ints, or floats holding integers) in [0, num_classes).

    The range is checked before the cast to int64, which would turn Inf or 1e30 into garbage."""
    xp = get_backend().xp
    if not data_checks():
        return target.astype(np.int64)
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
    if not data_checks():
        return
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


def _smooth(probs: Any, label_smoothing: float) -> Any:
    """q = (1 - eps) * target + eps / C (PyTorch's and Keras's label smoothing)."""
    if not label_smoothing:
        return probs
    c = probs.shape[1]
    return probs * probs.dtype.type(1.0 - label_smoothing) + probs.dtype.type(label_smoothing / c)


def _logits_xent(pred: Any, probs: Any) -> tuple[Any, Any]:
    """Per-sample -sum q log softmax(z) by log-sum-exp, and its gradient softmax(z) * sum(q) - q."""
    xp = get_backend().xp
    shifted = pred - pred.max(axis=1, keepdims=True)
    log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    per = -(probs * log_p).sum(axis=1)
    # sum(q) = 1 for proper targets; kept so the gradient is exact for any q
    return per, xp.exp(log_p) * probs.sum(axis=1, keepdims=True) - probs


def check_probabilities(pred: Any, where: str) -> None:
    """pred of a loss with from_logits=False: probabilities in [0, 1] (no NaN)."""
    xp = get_backend().xp
    if not data_checks():
        return
    if bool(xp.isnan(pred).any()) or bool((pred < 0).any()) or bool((pred > 1).any()):
        finite = pred[xp.isfinite(pred)]
        seen = (f"got min {float(finite.min()):.4g}, max {float(finite.max()):.4g}" if finite.size
                else "got no finite value")
        raise ValueError(f"{where}: argument 'pred' must hold probabilities in [0, 1] with from_logits=False, "
                         f"{seen}; an output without a softmax or sigmoid is logits: pass from_logits=True")


def _probs_xent(pred: Any, probs: Any, eps: float, where: str) -> tuple[Any, Any]:
    """Per-sample -sum q log p on probabilities p clipped to [eps, 1 - eps] (as Keras does), and its
    gradient -q / p, 0 where the clip is active."""
    check_probabilities(pred, where)
    xp = get_backend().xp
    lo, hi = pred.dtype.type(eps), pred.dtype.type(1 - eps)
    p = xp.clip(pred, lo, hi)
    per = -(probs * xp.log(p)).sum(axis=1)
    inside = (pred > lo) & (pred < hi)
    grad = xp.where(inside, -probs / p, 0).astype(pred.dtype, copy=False)
    return per, grad


def _clip_eps(eps: Any, where: str) -> float:
    return real_arg(eps, "eps", where, 0, 0.5, lo_open=True, hi_open=True, numpy=False)


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy on logits via log-sum-exp; targets are class labels (N,) or probabilities (N, C).

    `label_smoothing` = eps mixes the target with the uniform distribution, as PyTorch does:
    q = (1 - eps) * target + eps / C. It is CategoricalCrossentropy(from_logits=True)."""

    from_logits = True
    output_kind = "logits"

    def __init__(self, label_smoothing: float = 0.0, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.label_smoothing = real_arg(label_smoothing, "label_smoothing", self.name, 0, 1, numpy=False)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        per, grad = _logits_xent(pred, _smooth(_class_probs(target, pred, where), self.label_smoothing))
        return self._finish(per, grad, pred.shape[0])


class CategoricalCrossentropy(Loss):
    """Keras's categorical cross-entropy: targets one-hot or soft rows (N, C) summing to 1 (class
    labels (N,) are accepted too), mean over the batch.

    from_logits=False (the default, as in Keras): pred are probabilities, e.g. a softmax output;
    they are clipped to [eps, 1 - eps] as Keras does and the loss is -sum q log p, with gradient
    -q / p (0 where the clip is active), which a Softmax layer's backward turns into p - q.
    (Keras also divides pred by its row sum; here rows are taken as they are.)
    from_logits=True: pred are logits, and the loss is SoftmaxCrossEntropy's.
    `label_smoothing` = eps: q = (1 - eps) * target + eps / C."""

    from_logits = False  # the class default, as Keras; each instance has its argument's
    output_kind = "probabilities"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, eps: float = 1e-7,
                 reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.from_logits = bool(from_logits)
        self.output_kind = "logits" if self.from_logits else "probabilities"
        self.label_smoothing = real_arg(label_smoothing, "label_smoothing", self.name, 0, 1, numpy=False)
        self.eps = _clip_eps(eps, self.name)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        probs = _smooth(_class_probs(target, pred, where), self.label_smoothing)
        per, grad = _logits_xent(pred, probs) if self.from_logits else _probs_xent(pred, probs, self.eps, where)
        return self._finish(per, grad, pred.shape[0])


def _sparse_labels(target: Any, pred: Any, where: str) -> Any:
    """Integer class labels (N,) or (N, 1) for pred (N, C), as int64 indices."""
    n, c = pred.shape
    if target.ndim == 2 and target.shape == (n, 1):
        target = target.reshape(n)
    if target.ndim != 1 or target.shape[0] != n:
        hint = "; one-hot rows go to CategoricalCrossentropy" if tuple(target.shape) == (n, c) else ""
        raise ValueError(f"{where}: argument 'target' must be {n} integer class labels, shape ({n},) or ({n}, 1), "
                         f"to match pred {tuple(pred.shape)}, got shape {tuple(target.shape)}{hint}")
    return class_indices(target, c, where)


class SparseCategoricalCrossentropy(Loss):
    """Keras's sparse categorical cross-entropy: targets are integer class labels (N,) (or (N, 1)),
    mean over the batch.

    from_logits=False (the default, as in Keras): pred are probabilities, e.g. a softmax output,
    clipped to [eps, 1 - eps]; the loss is -log p[label], gradient -1 / p there (0 where clipped).
    from_logits=True: pred are logits (log-sum-exp, gradient softmax - one_hot)."""

    from_logits = False  # the class default, as Keras; each instance has its argument's
    output_kind = "probabilities"

    def __init__(self, from_logits: bool = False, eps: float = 1e-7, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.from_logits = bool(from_logits)
        self.output_kind = "logits" if self.from_logits else "probabilities"
        self.eps = _clip_eps(eps, self.name)

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        xp = get_backend().xp
        n = pred.shape[0]
        labels = _sparse_labels(target, pred, where)
        rows = xp.arange(n)
        if self.from_logits:
            one_hot = xp.zeros_like(pred)
            one_hot[rows, labels] = 1
            per, grad = _logits_xent(pred, one_hot)
        else:
            check_probabilities(pred, where)
            lo, hi = pred.dtype.type(self.eps), pred.dtype.type(1 - self.eps)
            picked = pred[rows, labels]
            p = xp.clip(picked, lo, hi)
            per = -xp.log(p)
            grad = xp.zeros_like(pred)
            grad[rows, labels] = xp.where((picked > lo) & (picked < hi), -1 / p, 0).astype(pred.dtype, copy=False)
        return self._finish(per, grad, n)


class NLLLoss(Loss):
    """PyTorch's negative log-likelihood: pred are log-probabilities (N, C), e.g. a LogSoftmax
    output; targets are class labels (N,). Per sample -weight[y] * pred[y]; "mean" divides by the
    sum of the weights of the batch's labels (by N without `weight`), as PyTorch does.

    `weight`: optional per-class weights (C non-negative numbers). Log-probabilities are logits
    whose softmax is the distribution itself, so from_logits is True and output_kind "logits"."""

    from_logits = True
    output_kind = "logits"

    def __init__(self, weight: Any = None, reduction: str | None = None) -> None:
        super().__init__(reduction)
        self.weight: tuple[float, ...] | None = None
        if weight is not None:
            if hasattr(weight, "shape"):  # an array, from any backend
                values = to_host(weight).reshape(-1).tolist()
            elif isinstance(weight, (list, tuple)):
                values = list(weight)
            else:
                raise TypeError(f"{self.name}: argument 'weight' must be a list, tuple or 1-D array of class "
                                f"weights, got {type(weight).__name__}")
            if not values:
                raise ValueError(f"{self.name}: argument 'weight' must hold one weight per class, got none")
            self.weight = tuple(nonneg_real(v, f"weight[{i}]", self.name) for i, v in enumerate(values))

    def forward(self, pred: Any, target: Any) -> Any:
        where = f"{self.name}.forward"
        pred, target = self._class_inputs(pred, target)
        xp = get_backend().xp
        n, c = pred.shape
        labels = _sparse_labels(target, pred, where)
        rows = xp.arange(n)
        if self.weight is None:
            w = xp.ones(n, dtype=pred.dtype)
        else:
            if len(self.weight) != c:
                raise ValueError(f"{where}: argument 'pred' has {c} classes but 'weight' has {len(self.weight)}")
            w = xp.asarray(np.asarray(self.weight, dtype=pred.dtype))[labels]
        per = -w * pred[rows, labels]
        grad = xp.zeros_like(pred)
        grad[rows, labels] = -w
        count = float(w.sum(dtype=_acc(w.dtype))) if self.weight is not None else n
        if self.reduction == "mean" and count == 0:
            raise ValueError(f"{where}: the weights of this batch's labels sum to 0; the weighted mean is undefined")
        return self._finish(per, grad, count)


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
        if t.size and data_checks() and (bool((t < 0).any()) or bool((t > 1).any())):
            raise ValueError(f"{where}: argument 'target' must hold values in [0, 1], got min {float(t.min())}, "
                             f"max {float(t.max())}")
        if self.from_logits:
            e = xp.exp(-xp.abs(pred))
            per = xp.maximum(pred, 0) - pred * t + xp.log1p(e)
            sig = xp.where(pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(pred.dtype, copy=False)
            return self._finish(per, sig - t, pred.size)
        check_probabilities(pred, where)
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
            is_one_hot = not data_checks() or (bool(((target == 0) | (target == 1)).all())
                                               and bool((target.sum(axis=1) == 1).all()))
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
    "softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": SoftmaxCrossEntropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "nll": NLLLoss, "nll_loss": NLLLoss, "negative_log_likelihood": NLLLoss,
    "mse": MSE, "mean_squared_error": MSE, "mae": MAE, "mean_absolute_error": MAE, "huber": Huber,
    "sse": SumSquaredError, "sum_squared_error": SumSquaredError,
    "binary_crossentropy": BinaryCrossEntropy, "binary_cross_entropy": BinaryCrossEntropy, "bce": BinaryCrossEntropy,
    "hinge": MulticlassHinge, "multiclass_hinge": MulticlassHinge, "svm": MulticlassHinge,
}

#: names that say "cross-entropy" without saying on what: the loss they build takes whatever the
#: model's output is (match_output picks the form, silently). "softmax_cross_entropy" and
#: "cross_entropy" (PyTorch's, on logits) say logits, and are matched like any explicit loss.
_ADAPTIVE_NAMES = frozenset({"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
                             "binary_cross_entropy", "bce"})


def register_loss(name: str, cls: type) -> None:
    """Make `cls` (a Loss subclass) available by `name` (case-insensitive) to get_loss and compile."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"register_loss: argument 'name' must be a non-empty str, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise TypeError(f"register_loss: argument 'cls' must be a Loss subclass, got {cls!r}")
    _BY_NAME[name.strip().lower()] = cls


def get_loss(spec: str | Loss) -> Loss:
    """A Loss instance from a name (Keras's defaults: "sparse_categorical_crossentropy" and
    "categorical_crossentropy" take probabilities, from_logits=False, until match_output adapts
    them to the model's output) or an instance (returned as is)."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        key = spec.lower()
        loss = _BY_NAME[key]()
        loss._by_name = key in _ADAPTIVE_NAMES  # see match_output
        return loss
    raise ValueError(f"get_loss: argument 'loss' must be a Loss or one of {sorted(_BY_NAME)}, got {spec!r}")


# -- matching the loss to the model's output ------------------------------------------------------
OUTPUT_ACTIVATIONS = (None, "softmax", "sigmoid", "log_softmax")


def _as_probabilities(loss: Loss) -> Loss | None:
    """The same loss on probabilities (same label smoothing, eps and reduction), or None when
    `loss` is not a logits cross-entropy with such a form."""
    if isinstance(loss, SoftmaxCrossEntropy):
        return CategoricalCrossentropy(from_logits=False, label_smoothing=loss.label_smoothing,
                                       reduction=loss.reduction)
    if isinstance(loss, CategoricalCrossentropy) and loss.from_logits:
        return CategoricalCrossentropy(from_logits=False, label_smoothing=loss.label_smoothing, eps=loss.eps,
                                       reduction=loss.reduction)
    if isinstance(loss, SparseCategoricalCrossentropy) and loss.from_logits:
        return SparseCategoricalCrossentropy(from_logits=False, eps=loss.eps, reduction=loss.reduction)
    return None


def _as_logits(loss: Loss) -> Loss | None:
    """The same cross-entropy on logits, or None when `loss` is not a probability-form one."""
    if isinstance(loss, CategoricalCrossentropy) and not loss.from_logits:
        return CategoricalCrossentropy(from_logits=True, label_smoothing=loss.label_smoothing, eps=loss.eps,
                                       reduction=loss.reduction)
    if isinstance(loss, SparseCategoricalCrossentropy) and not loss.from_logits:
        return SparseCategoricalCrossentropy(from_logits=True, eps=loss.eps, reduction=loss.reduction)
    return None


def _binary(loss: Loss, from_logits: bool) -> Loss | None:
    """BinaryCrossEntropy in the other form, or None when `loss` is not one in the given form's opposite."""
    if isinstance(loss, BinaryCrossEntropy) and loss.from_logits != from_logits:
        return BinaryCrossEntropy(from_logits=from_logits, eps=loss.eps, reduction=loss.reduction)
    return None


def _describe(loss: Loss) -> str:
    flag = getattr(loss, "from_logits", None)
    if isinstance(loss, (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossEntropy)):
        return f"{loss.name}(from_logits={flag})"
    return loss.name


def _outside_gpunn() -> int:
    """The warnings stacklevel, from the caller of warn, of the first frame outside the gpunn package:
    the warning then points at the user's line (their compile(...)), however deep gpunn called."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 1  # frame 2: the caller of the function that calls warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level + 1


def _switched(old: Loss, new: Loss, activation: str | None, why: str) -> Loss:
    """`new`, with a warning naming both losses unless `old` came from a name that leaves the form open."""
    if not getattr(old, "_by_name", False):
        ends = f"ends in {activation}" if activation else "has no softmax or sigmoid"
        warnings.warn(f"match_output: the model's output {ends} and the loss is {_describe(old)}, {why}; training "
                      f"with {_describe(new)} instead, the same loss on what the output is", UserWarning,
                      stacklevel=_outside_gpunn())
    return new


def match_output(loss: Loss, activation: str | None) -> Loss:
    """The loss to train with when the model's output ends in `activation` ("softmax",
    "sigmoid", "log_softmax", or None for anything else, e.g. a Dense without activation, as
    gpunn.layers.output_activation names it). compile calls it for each output.

    - "softmax" with a cross-entropy on logits (SoftmaxCrossEntropy, CategoricalCrossentropy or
      SparseCategoricalCrossentropy with from_logits=True), or "sigmoid" with
      BinaryCrossEntropy(from_logits=True): the same loss on probabilities (same label smoothing
      and reduction), and a UserWarning naming both - a second softmax (or sigmoid) inside the
      loss would otherwise train a worse model, silently. "softmax" with NLLLoss (which wants
      log-probabilities) gives SparseCategoricalCrossentropy on probabilities, also with a warning.
    - None or "log_softmax" with a cross-entropy on probabilities built from a name
      ("categorical_crossentropy", "sparse_categorical_crossentropy"): the logits form, silently
      (log-probabilities are logits); a probability-form instance you built is kept as you
      declared it (it refuses values outside [0, 1] at the first batch). The same for
      "binary_crossentropy" on a sigmoid output: the probability form, silently.
    - Everything else is returned unchanged: a logits loss on a plain output, NLLLoss after a
      LogSoftmax, a probability loss after the matching activation, regression losses.
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"match_output: argument 'loss' must be a gpunn Loss, got {type(loss).__name__}")
    if activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"match_output: argument 'activation' must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")
    by_name = bool(getattr(loss, "_by_name", False))
    if activation == "softmax":
        probs = _as_probabilities(loss)
        if probs is not None:
            return _switched(loss, probs, activation, "which applies a softmax of its own")
        if isinstance(loss, NLLLoss):
            if loss.weight is not None:
                raise ValueError("match_output: the model's output ends in softmax and the loss is NLLLoss with class "
                                 "weights, which wants log-probabilities: end the model in LogSoftmax instead")
            return _switched(loss, SparseCategoricalCrossentropy(from_logits=False, reduction=loss.reduction),
                             activation, "which wants log-probabilities")
        binary = _binary(loss, from_logits=False)
        if binary is not None:
            return _switched(loss, binary, activation, "which applies a sigmoid of its own")
        return loss
    if activation == "sigmoid":
        binary = _binary(loss, from_logits=False)
        if binary is not None:
            return _switched(loss, binary, activation, "which applies a sigmoid of its own")
        return loss
    # a plain output or log-probabilities: logits to a softmax (log_softmax is its own logits)
    if by_name:
        logits = _as_logits(loss)
        if logits is not None:
            return logits
        if activation is None:
            binary = _binary(loss, from_logits=True)
            if binary is not None:
                return binary
    return loss
