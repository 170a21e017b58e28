"""Metrics: plain functions of (y_true, y_pred) returning a Python float, plus a confusion matrix.

They run on host NumPy copies: a metric is a handful of reductions per batch, and reading the
prediction back once is cheaper than keeping two code paths. Predictions may be logits or
probabilities (argmax does not care); labels may be class indices (N,) or one-hot rows (N, C).

`device_metric(fn)` gives the device form of a built-in metric, for a captured training step
(CUDA graph) that cannot read the batch back: see the section "Device metrics" below.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from gpunn._checks import positive_int, real_arg
from gpunn.backend import get_backend, to_host

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
            # a partial, not a lambda: device_metric reads the threshold back from it
            return key, functools.partial(binary_accuracy, threshold=0.0)
        return key, fn
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__), spec
    raise TypeError(f"get_metric: argument 'metric' must be a str or a callable, got {type(spec).__name__}")


# -- Device metrics ---------------------------------------------------------------------------
# A captured training step (CUDA graph) replays its device ops without Python, and the host reads
# the loss and metrics once per logging interval. The host metrics above cannot run there: they
# copy the batch to the host. A DeviceMetric computes the same batch mean with the current
# backend's array module only, and returns it as a 0-d float64 device array:
# - no host reads (no float()/bool() of arrays, .item(), to_host, no `if` on array values), no
#   host-to-device copies (Python scalars are the only host operands), no data-dependent shapes
#   (no boolean masks, no nonzero); Python branches on shapes and dtypes only;
# - so no check that reads the data: the targets are assumed validated (no NaN, integer class
#   labels in [0, classes)). Run the host metric on a batch first to check them; an out-of-range
#   label here may raise on NumPy but is undefined on a GPU.
# Ties are broken as the host versions break them: argmax takes the first maximum, and top-k counts
# the classes that score strictly higher than the label.

#: the float dtype of every DeviceMetric result (the host metrics accumulate in float64 too)
DEVICE_RESULT_DTYPE = np.dtype(np.float64)


def _device(a: Any, name: str, where: str) -> Any:
    """`a` checked, from its shape and dtype only, as a device array of the current backend."""
    if a is None:
        raise TypeError(f"{where}: argument '{name}' must be an array, got None")
    be = get_backend()
    if not be.is_native(a):
        # converting here would be a host-to-device copy, which a captured step cannot make
        raise TypeError(f"{where}: argument '{name}' must be an array of the {be.name} backend (device memory), got "
                        f"{type(a).__module__}.{type(a).__qualname__}; move it there before the step "
                        "(backend.asarray), or use the host metric")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{where}: argument '{name}' must be numeric, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"{where}: argument '{name}' must hold at least one sample, got shape {tuple(a.shape)}")
    return a


def _device_mean(x: Any) -> Any:
    """The mean of all of `x` as a 0-d float64 device array. keepdims then reshape: NumPy's full
    reduction gives a host scalar, CuPy's a 0-d array; this gives a 0-d array on both."""
    return x.mean(dtype=DEVICE_RESULT_DTYPE, keepdims=True).reshape(())


def _device_scores(y_pred: Any, where: str) -> Any:
    pred = _device(y_pred, "y_pred", where)
    if pred.ndim != 2:
        raise ValueError(f"{where}: argument 'y_pred' must have shape (N, classes), got {tuple(pred.shape)}")
    if pred.shape[1] == 0:
        raise ValueError(f"{where}: argument 'y_pred' must have at least one class, got shape {tuple(pred.shape)}")
    return pred


def _device_labels(y_true: Any, n: int, where: str) -> Any:
    """Class indices (int64, (N,)) from labels (N,) / (N, 1), int or float holding integers, or
    one-hot/probability rows (N, C); the shape rules of `_labels`, without its value checks."""
    true = _device(y_true, "y_true", where)
    if true.ndim == 2 and true.shape[1] > 1:
        labels = true.argmax(axis=1)
    elif true.ndim == 1 or (true.ndim == 2 and true.shape[1] == 1):
        labels = true.reshape(-1).astype(np.int64)
    else:
        raise ValueError(f"{where}: argument 'y_true' must be labels (N,) or one-hot rows (N, C), "
                         f"got shape {tuple(true.shape)}")
    if labels.shape[0] != n:
        raise ValueError(f"{where}: argument 'y_true' has {labels.shape[0]} samples but 'y_pred' has {n}")
    return labels


def _device_accuracy(y_true: Any, y_pred: Any) -> Any:
    where = "accuracy"
    pred = _device_scores(y_pred, where)
    labels = _device_labels(y_true, pred.shape[0], where)
    return _device_mean(pred.argmax(axis=1) == labels)


def _device_top_k_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> Any:
    where = "top_k_accuracy"
    pred = _device_scores(y_pred, where)
    labels = _device_labels(y_true, pred.shape[0], where)
    k = min(k, pred.shape[1])
    xp = get_backend().xp
    # the label's own score per row, gathered (no host arange/index arrays), then the count of
    # classes scoring strictly higher, as the host version counts them
    label_score = xp.take_along_axis(pred, labels.reshape(-1, 1), axis=1)
    higher = (pred > label_score).sum(axis=1)
    return _device_mean(higher < k)


def _device_binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Any:
    where = "binary_accuracy"
    pred = _device(y_pred, "y_pred", where)
    true = _device(y_true, "y_true", where)
    if tuple(true.shape) != tuple(pred.shape):
        if true.size == pred.size and true.shape[0] == pred.shape[0]:
            true = true.reshape(pred.shape)
        else:
            raise ValueError(f"{where}: argument 'y_true' must have the shape of y_pred {tuple(pred.shape)}, got "
                             f"{tuple(true.shape)}")
    return _device_mean((pred > threshold) == (true > 0.5))


def _device_same_shape(y_true: Any, y_pred: Any, where: str) -> tuple[Any, Any]:
    pred = _device(y_pred, "y_pred", where).astype(np.float64)
    true = _device(y_true, "y_true", where).astype(np.float64)
    pshape, tshape = tuple(pred.shape), tuple(true.shape)
    if tshape != pshape and pred.ndim == 2 and pshape[1] == 1 and tshape == pshape[:1]:
        true = true.reshape(pshape)  # targets (N,) for an output (N, 1), as the host version takes them
    if tuple(true.shape) != pshape:
        raise ValueError(f"{where}: argument 'y_true' must have the shape of y_pred {pshape}, got {tshape}")
    return true, pred


def _device_mse(y_true: Any, y_pred: Any) -> Any:
    true, pred = _device_same_shape(y_true, y_pred, "mse")
    diff = pred - true
    return _device_mean(diff * diff)


def _device_mae(y_true: Any, y_pred: Any) -> Any:
    true, pred = _device_same_shape(y_true, y_pred, "mae")
    return _device_mean(get_backend().xp.abs(pred - true))


class DeviceMetric:
    """The device form of a built-in metric: `metric(y_true, y_pred)` -> 0-d float64 device array
    holding the batch mean the host metric `host` returns (to float rounding), computed with the
    current backend's array ops only, so that a captured step can run it every batch.

    `name` is the host function's name; `params` the keyword arguments fixed at construction
    (already validated: {"k": 5}, {"threshold": 0.0}, or none). The arguments must be arrays of the
    current backend; their shapes are checked (ValueError/TypeError naming the argument, as the
    host versions raise), their values are not (see the section comment above)."""

    __slots__ = ("name", "host", "params", "_impl")

    def __init__(self, host: MetricFn, impl: Callable[..., Any], params: dict[str, Any]) -> None:
        self.name: str = host.__name__
        self.host: MetricFn = host
        self.params: dict[str, Any] = dict(params)
        self._impl = impl

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        return self._impl(y_true, y_pred, **self.params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"DeviceMetric({self.name}{', ' + args if args else ''})"


def _check_k(k: Any) -> dict[str, Any]:
    return {"k": positive_int(k, "k", "top_k_accuracy")}


def _check_threshold(threshold: Any) -> dict[str, Any]:
    return {"threshold": real_arg(threshold, "threshold", "binary_accuracy", numpy=False)}


#: host function -> (device implementation, the keyword it may fix and its check, its default)
_DEVICE: dict[Any, tuple[Callable[..., Any], str | None, Callable[[Any], dict[str, Any]] | None, Any]] = {
    accuracy: (_device_accuracy, None, None, None),
    top_k_accuracy: (_device_top_k_accuracy, "k", _check_k, 5),
    binary_accuracy: (_device_binary_accuracy, "threshold", _check_threshold, 0.5),
    mse: (_device_mse, None, None, None),
    mae: (_device_mae, None, None, None),
}


def device_metric(fn: Any) -> DeviceMetric | None:
    """The device form (see DeviceMetric) of a metric as compile stores it in `spec.metric_fns`,
    or None when it has none (a user's own function, confusion_matrix, a partial that fixes
    anything but top_k_accuracy's `k` or binary_accuracy's `threshold`).

    Recognised: the functions accuracy, top_k_accuracy (k=5), binary_accuracy (threshold=0.5),
    mse and mae, and functools.partial of top_k_accuracy with `k=` or of binary_accuracy with
    `threshold=` (what get_metric returns for "binary_accuracy" with from_logits). A bad k or
    threshold raises here, as the host function would on its first call. A DeviceMetric passed
    in comes back as it is."""
    if isinstance(fn, DeviceMetric):
        return fn
    params: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        # partial(partial(f, ...), ...) is flattened by functools itself: one level to read
        if fn.args:
            return None  # fixes y_true or y_pred: not a metric of (y_true, y_pred) we know
        params = dict(fn.keywords)
        fn = fn.func
    try:
        entry = _DEVICE.get(fn)
    except TypeError:  # an unhashable callable: not one of ours
        return None
    if entry is None:
        return None
    impl, keyword, check, default = entry
    if set(params) - ({keyword} if keyword else set()):
        return None
    if keyword is not None:
        params = check(params.get(keyword, default))
    return DeviceMetric(fn, impl, params)
