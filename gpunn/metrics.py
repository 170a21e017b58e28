"""Metrics: plain functions of (y_true, y_pred) returning a Python float, plus a confusion matrix.

They run on host NumPy copies: a metric is a handful of reductions per batch, and reading the
prediction back once is cheaper than keeping two code paths. Predictions may be logits or
probabilities (argmax does not care); labels may be class indices (N,) or one-hot rows (N, C).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn._checks import positive_int, real_arg
from gpunn.backend import to_host

MetricFn = Callable[[Any, Any], float]


def _host(a: Any, name: str, where: str) -> np.ndarray:
    if a is None:
        raise TypeError(f"{where}: argument '{name}' must be an array, got None")
    a = to_host(a)  # any backend's array, a torch or JAX tensor, or a list
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{where}: argument '{name}' must be numeric, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"{where}: argument '{name}' must hold at least one sample, got shape {a.shape}")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError(f"{where}: argument '{name}' contains NaN")
    return a


def _labels(y_true: np.ndarray, n: int, num_classes: int | None, where: str) -> np.ndarray:
    """Class indices from labels (N,) or one-hot/probability rows (N, C)."""
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        labels = y_true.argmax(axis=1)
    elif y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1):
        flat = y_true.reshape(-1)
        if flat.dtype.kind == "f" and not np.all(flat == np.round(flat)):
            raise ValueError(f"{where}: argument 'y_true' holds non-integer class labels")
        labels = flat.astype(np.int64)
    else:
        raise ValueError(f"{where}: argument 'y_true' must be labels (N,) or one-hot rows (N, C), "
                         f"got shape {y_true.shape}")
    if labels.shape[0] != n:
        raise ValueError(f"{where}: argument 'y_true' has {labels.shape[0]} samples but 'y_pred' has {n}")
    if num_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: argument 'y_true' has labels outside [0, {num_classes})")
    return labels


def _scores(y_pred: np.ndarray, where: str) -> np.ndarray:
    if y_pred.ndim != 2:
        raise ValueError(f"{where}: argument 'y_pred' must have shape (N, classes), got {y_pred.shape}")
    return y_pred


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of samples whose highest-scoring class is the label."""
    where = "accuracy"
    pred = _scores(_host(y_pred, "y_pred", where), where)
    labels = _labels(_host(y_true, "y_true", where), pred.shape[0], pred.shape[1], where)
    return float((pred.argmax(axis=1) == labels).mean())


def top_k_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> float:
    """Share of samples whose label is among the k highest scores (ties broken by class order)."""
    where = "top_k_accuracy"
    k = positive_int(k, "k", where)
    pred = _scores(_host(y_pred, "y_pred", where), where)
    labels = _labels(_host(y_true, "y_true", where), pred.shape[0], pred.shape[1], where)
    k = min(k, pred.shape[1])
    # a label is in the top k when fewer than k classes score strictly higher
    label_score = pred[np.arange(pred.shape[0]), labels][:, None]
    higher = (pred > label_score).sum(axis=1)
    return float((higher < k).mean())


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> float:
    """Elementwise share of (y_pred > threshold) == y_true, for multi-label or binary outputs.

    Use threshold=0.0 when y_pred are logits (sigmoid(z) > 0.5 iff z > 0)."""
    where = "binary_accuracy"
    threshold = real_arg(threshold, "threshold", where, numpy=False)
    pred = _host(y_pred, "y_pred", where)
    true = _host(y_true, "y_true", where)
    if true.shape != pred.shape:
        if true.size == pred.size and true.shape[0] == pred.shape[0]:
            true = true.reshape(pred.shape)
        else:
            raise ValueError(f"{where}: argument 'y_true' must have the shape of y_pred {pred.shape}, got {true.shape}")
    return float(((pred > threshold) == (true > 0.5)).mean())


def _same_shape(y_true: Any, y_pred: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    pred = _host(y_pred, "y_pred", where).astype(np.float64)
    true = _host(y_true, "y_true", where).astype(np.float64)
    if true.shape != pred.shape and pred.ndim == 2 and pred.shape[1] == 1 and true.shape == pred.shape[:1]:
        true = true.reshape(pred.shape)  # Keras's habit: targets (N,) for an output (N, 1)
    if true.shape != pred.shape:
        raise ValueError(f"{where}: argument 'y_true' must have the shape of y_pred {pred.shape}, got {true.shape}")
    return true, pred


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all elements (float64 accumulation)."""
    true, pred = _same_shape(y_true, y_pred, "mse")
    return float(np.mean((pred - true) ** 2))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error over all elements."""
    true, pred = _same_shape(y_true, y_pred, "mae")
    return float(np.mean(np.abs(pred - true)))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts C[i, j] of samples with true class i predicted as class j.

    y_pred may be scores (N, C) (argmax is taken) or predicted labels (N,)."""
    where = "confusion_matrix"
    pred = _host(y_pred, "y_pred", where)
    if pred.ndim == 2:
        num_classes = pred.shape[1] if num_classes is None else num_classes
        pred_labels = pred.argmax(axis=1)
    elif pred.ndim == 1:
        pred_labels = _labels(pred, pred.shape[0], None, where)
    else:
        raise ValueError(f"{where}: argument 'y_pred' must be scores (N, C) or labels (N,), got shape {pred.shape}")
    labels = _labels(_host(y_true, "y_true", where), pred_labels.shape[0], None, where)
    if num_classes is None:
        num_classes = int(max(labels.max(), pred_labels.max())) + 1
    num_classes = positive_int(num_classes, "num_classes", where)
    for name, arr in (("y_true", labels), ("y_pred", pred_labels)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ValueError(f"{where}: argument '{name}' has labels outside [0, {num_classes})")
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (labels, pred_labels), 1)
    return out


_BY_NAME: dict[str, MetricFn] = {
    "accuracy": accuracy, "acc": accuracy, "categorical_accuracy": accuracy,
    "sparse_categorical_accuracy": accuracy,
    "top_k_accuracy": top_k_accuracy, "top5": top_k_accuracy,
    "binary_accuracy": binary_accuracy,
    "mse": mse, "mean_squared_error": mse, "mae": mae, "mean_absolute_error": mae,
}


def get_metric(spec: str | MetricFn, from_logits: bool = False) -> tuple[str, MetricFn]:
    """(display name, function) for a metric name or a callable(y_true, y_pred) -> float.

    With `from_logits`, "binary_accuracy" thresholds at 0 (logit space) instead of 0.5."""
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _BY_NAME:
            raise ValueError(f"get_metric: argument 'metric' must be a callable or one of {sorted(_BY_NAME)}, "
                             f"got {spec!r}")
        fn = _BY_NAME[key]
        if fn is binary_accuracy and from_logits:
            return key, lambda t, p: binary_accuracy(t, p, threshold=0.0)
        return key, fn
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__), spec
    raise TypeError(f"get_metric: argument 'metric' must be a str or a callable, got {type(spec).__name__}")
