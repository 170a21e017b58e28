"""Device metrics (gpunn.metrics.device_metric): the batch mean the host metric returns, as a 0-d
float64 device array, computed with the backend's array ops only (what a captured step can run),
for every built-in metric form compile stores in `metric_fns`."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import gpunn
from gpunn import Sequential, metrics
from gpunn.layers import Dense
from gpunn.metrics import DEVICE_RESULT_DTYPE, DeviceMetric, device_metric

N, C = 37, 5


def compiled_metric_fns(loss: str, names: list[str]) -> list[tuple[str, Any]]:
    """The (name, function) pairs compile stores for `names`, read off a compiled model."""
    with gpunn.use_backend("numpy"):
        model = Sequential([Dense(1, input_shape=(1,))])
        model.build((1,))
        model.compile(loss=loss, optimizer="sgd", metrics=names)
        return list(model.metric_fns)


CLASS_NAMES = ["accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "top_k_accuracy", "top5"]
REGRESSION_NAMES = ["mse", "mean_squared_error", "mae", "mean_absolute_error"]

# the class-score metric forms: plain functions, partials, and what compile makes of the names
CLASS_FORMS = [
    pytest.param(metrics.accuracy, id="accuracy"),
    pytest.param(metrics.top_k_accuracy, id="top_k_accuracy"),
    *[pytest.param(functools.partial(metrics.top_k_accuracy, k=k), id=f"top_{k}") for k in (1, 2, 3, C, C + 4)],
    *[pytest.param(fn, id=f"compiled-{name}") for name, fn in compiled_metric_fns("mse", CLASS_NAMES)],
]
BINARY_FORMS = [
    pytest.param(metrics.binary_accuracy, id="binary_accuracy"),
    *[pytest.param(functools.partial(metrics.binary_accuracy, threshold=t), id=f"threshold_{t}")
      for t in (0.0, 0.25, 1)],
    # from_logits (binary_crossentropy): threshold 0; on values (mse): threshold 0.5
    *[pytest.param(fn, id=f"compiled-{loss}-{name}")
      for loss in ("binary_crossentropy", "mse") for name, fn in compiled_metric_fns(loss, ["binary_accuracy"])],
]
REGRESSION_FORMS = [
    pytest.param(metrics.mse, id="mse"), pytest.param(metrics.mae, id="mae"),
    *[pytest.param(fn, id=f"compiled-{name}") for name, fn in compiled_metric_fns("mse", REGRESSION_NAMES)],
]


@pytest.fixture(params=["numpy", "emulated"])
def device_backend(request):
    """Made current for the test; the emulated backend's arrays stand for device memory. Skips
    where the emulator cannot build, with conftest's reason."""
    if request.param == "emulated":
        request.getfixturevalue("emulated")  # the conftest fixture skips with the reason
    with gpunn.use_backend(request.param) as be:
        yield be


def on_device(be: Any, *arrays: np.ndarray) -> list[Any]:
    return [be.asarray(a) for a in arrays]


def check(be: Any, fn: Any, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The device value of `fn` equals the host value, as a 0-d float64 array of the backend."""
    dm = device_metric(fn)
    assert isinstance(dm, DeviceMetric)
    result = dm(*on_device(be, y_true, y_pred))
    assert be.is_native(result)
    assert result.shape == () and result.dtype == DEVICE_RESULT_DTYPE == np.float64
    expected = fn(y_true, y_pred)
    got = float(be.to_numpy(result))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    return got


def tied_scores(rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """Scores from a few integer levels: many rows with tied maxima and ties at the label."""
    return rng.integers(-1, 3, (N, C)).astype(dtype)


def label_forms(labels: np.ndarray) -> dict[str, np.ndarray]:
    one_hot = np.eye(C, dtype=np.int64)[labels]
    return {"int (N,)": labels, "float (N,)": labels.astype(np.float32), "int (N,1)": labels[:, None],
            "float (N,1)": labels[:, None].astype(np.float64), "one-hot int": one_hot,
            "one-hot float": one_hot.astype(np.float32)}


@pytest.mark.parametrize("fn", CLASS_FORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_class_metrics_match_the_host(device_backend, fn, dtype):
    rng = np.random.default_rng(1)
    for _ in range(3):
        pred = tied_scores(rng, dtype)
        labels = rng.integers(0, C, N)
        for y_true in label_forms(labels).values():
            check(device_backend, fn, y_true, pred)


@pytest.mark.parametrize("fn", CLASS_FORMS)
def test_all_tied_rows(device_backend, fn):
    """Every class ties: argmax is class 0, and the top-k holds every label (none scores higher)."""
    labels = np.arange(N) % C
    pred = np.zeros((N, C), np.float32)
    got = check(device_backend, fn, labels, pred)
    name = device_metric(fn).name
    if name == "accuracy":
        assert got == pytest.approx(np.mean(labels == 0))
    else:
        assert got == 1.0


def test_top_k_counts_strictly_higher_scores(device_backend):
    # label 2 scores 1, as does class 0; one class (3) scores higher: in the top 2, not the top 1
    pred = np.array([[1.0, 0.0, 1.0, 2.0]])
    for k, expected in ((1, 0.0), (2, 1.0)):
        fn = functools.partial(metrics.top_k_accuracy, k=k)
        assert check(device_backend, fn, np.array([2]), pred) == expected


@pytest.mark.parametrize("fn", BINARY_FORMS)
@pytest.mark.parametrize("shape, target_shape", [((N, 1), (N, 1)), ((N, 1), (N,)), ((N, 3), (N, 3)),
                                                 ((N, 3), (N, 1, 3)), ((N,), (N,))])
def test_binary_accuracy_matches_the_host(device_backend, fn, shape, target_shape):
    rng = np.random.default_rng(2)
    # values on a grid that holds both thresholds exactly (0 and 0.5): ties at the threshold
    pred = (rng.integers(-4, 5, shape) / 4).astype(np.float32)
    true = rng.integers(0, 2, target_shape)
    for y_true in (true, true.astype(np.float64), true.astype(bool)):
        check(device_backend, fn, y_true, pred)


def test_the_compiled_thresholds(device_backend):
    """compile's binary_accuracy thresholds logits at 0 and values at 0.5, on the device too."""
    pred = np.array([[-1.0], [0.2], [0.4], [0.9]], np.float32)
    true = np.ones((4, 1), np.float32)
    (_, on_logits), = compiled_metric_fns("binary_crossentropy", ["binary_accuracy"])
    (_, on_values), = compiled_metric_fns("mse", ["binary_accuracy"])
    assert device_metric(on_logits).params == {"threshold": 0.0}
    assert device_metric(on_values).params == {"threshold": 0.5}
    assert check(device_backend, on_logits, true, pred) == 0.75
    assert check(device_backend, on_values, true, pred) == 0.25


@pytest.mark.parametrize("fn", REGRESSION_FORMS)
@pytest.mark.parametrize("shape, target_shape", [((N, 1), (N, 1)), ((N, 1), (N,)), ((N, 4), (N, 4)), ((N,), (N,)),
                                                 ((N, 2, 3), (N, 2, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_regression_metrics_match_the_host(device_backend, fn, shape, target_shape, dtype):
    rng = np.random.default_rng(3)
    pred = (rng.normal(size=shape) * 3).astype(dtype)
    true = (rng.normal(size=target_shape) * 3).astype(dtype)
    check(device_backend, fn, true, pred)
    check(device_backend, fn, pred.reshape(target_shape), pred)  # exactly 0


def test_every_named_builtin_has_a_device_form():
    for name in metrics._BY_NAME:
        _, fn = metrics.get_metric(name)
        assert device_metric(fn) is not None, name
        _, fn = metrics.get_metric(name, from_logits=True)
        assert device_metric(fn) is not None, name


def test_the_parameters_are_read_and_checked():
    assert device_metric(metrics.top_k_accuracy).params == {"k": 5}
    assert device_metric(functools.partial(metrics.top_k_accuracy, k=2)).params == {"k": 2}
    assert device_metric(metrics.binary_accuracy).params == {"threshold": 0.5}
    assert device_metric(functools.partial(functools.partial(metrics.binary_accuracy, threshold=0.1))).params == {
        "threshold": 0.1}
    assert device_metric(metrics.accuracy).params == {}
    dm = device_metric(metrics.mse)
    assert device_metric(dm) is dm
    assert dm.name == "mse" and dm.host is metrics.mse and repr(dm) == "DeviceMetric(mse)"
    with pytest.raises(ValueError, match="'k'"):
        device_metric(functools.partial(metrics.top_k_accuracy, k=0))
    with pytest.raises(ValueError, match="'threshold'"):
        device_metric(functools.partial(metrics.binary_accuracy, threshold=float("nan")))


def my_metric(y_true: Any, y_pred: Any) -> float:
    return 0.0


@pytest.mark.parametrize("fn", [
    pytest.param(my_metric, id="user-function"),
    pytest.param(lambda t, p: metrics.accuracy(t, p), id="lambda"),
    pytest.param(metrics.confusion_matrix, id="confusion_matrix"),
    pytest.param(functools.partial(metrics.accuracy, np.zeros(3)), id="partial-positional"),
    pytest.param(functools.partial(metrics.accuracy, k=2), id="partial-unknown-keyword"),
    pytest.param(functools.partial(my_metric, k=2), id="partial-of-user-function"),
    pytest.param(np.mean, id="numpy-function"),
])
def test_no_device_form(fn):
    assert device_metric(fn) is None


def test_a_users_metric_from_compile_has_none():
    (_, fn), = compiled_metric_fns("mse", [my_metric])
    assert device_metric(fn) is None


BAD_SHAPES = [
    (metrics.accuracy, np.array([0, 1]), np.zeros((3, 2))),
    (metrics.accuracy, np.array([0, 1]), np.zeros(2)),
    (metrics.accuracy, np.zeros((2, 2, 2)), np.zeros((2, 2))),
    (metrics.accuracy, np.zeros(0), np.zeros((0, 2))),
    (metrics.top_k_accuracy, np.zeros((3, 4)), np.zeros((2, 4))),
    (metrics.top_k_accuracy, np.array([0, 1]), np.zeros((2, 2, 1))),
    (metrics.binary_accuracy, np.zeros((2, 2)), np.zeros((3, 2))),
    (metrics.binary_accuracy, np.zeros((2, 3)), np.zeros((2, 2))),
    (metrics.mse, np.zeros(3), np.zeros(4)),
    (metrics.mse, np.zeros(3), np.zeros((3, 2))),
    (metrics.mae, np.zeros((3, 1)), np.zeros(3)),
    (metrics.mae, np.zeros(2), np.zeros((3, 1))),
]


@pytest.mark.parametrize("fn, y_true, y_pred", BAD_SHAPES)
def test_bad_shapes_raise_as_the_host_does(device_backend, fn, y_true, y_pred):
    with pytest.raises(ValueError) as host:
        fn(y_true, y_pred)
    with pytest.raises(ValueError) as dev:
        device_metric(fn)(*on_device(device_backend, y_true, y_pred))
    assert str(dev.value) == str(host.value)
    assert "argument 'y_" in str(dev.value)


def test_bad_arguments_name_the_argument(device_backend):
    dm = device_metric(metrics.accuracy)
    pred = device_backend.asarray(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="argument 'y_true' must be an array, got None"):
        dm(None, pred)
    with pytest.raises(TypeError, match="argument 'y_pred' must be numeric"):
        dm(device_backend.asarray(np.zeros(2)), device_backend.asarray(np.zeros((2, 3), complex)))
    with pytest.raises(ValueError, match="argument 'y_pred' must have at least one class"):
        dm(device_backend.asarray(np.zeros(2)), device_backend.asarray(np.zeros((2, 0))))


def test_host_arrays_are_refused_on_a_device_backend(emulated):
    """A host array would need a host-to-device copy, which a captured step cannot make."""
    with gpunn.use_backend(emulated):
        dm = device_metric(metrics.mse)
        with pytest.raises(TypeError, match=r"^mse: argument 'y_true' must be an array of the emulated backend"):
            dm(np.zeros(3), emulated.asarray(np.zeros(3)))
        with pytest.raises(TypeError, match=r"^mse: argument 'y_pred' must be an array of the emulated backend"):
            dm(emulated.asarray(np.zeros(3)), [0.0, 1.0, 2.0])


@pytest.mark.parametrize("fn, kind", [
    (metrics.accuracy, "class"), (functools.partial(metrics.top_k_accuracy, k=2), "class"),
    (functools.partial(metrics.binary_accuracy, threshold=0.0), "binary"), (metrics.mse, "regression"),
    (metrics.mae, "regression"),
])
def test_captured_and_replayed(emulated, fn, kind):
    """Captured once (the recorder refuses host reads, host-to-device copies and data-dependent
    shapes), replayed on new batches written into the same memory: each replay gives that batch's
    host value."""
    if not emulated.supports_graphs:
        pytest.skip("the emulated backend cannot capture graphs here")
    rng = np.random.default_rng(4)

    def batch() -> tuple[np.ndarray, np.ndarray]:
        if kind == "class":
            return np.eye(C)[rng.integers(0, C, N)], tied_scores(rng, np.float32)
        if kind == "binary":
            return rng.integers(0, 2, (N, 1)).astype(np.float32), (rng.integers(-2, 3, (N, 1)) / 2).astype(np.float32)
        return rng.normal(size=N), rng.normal(size=(N, 1))

    with gpunn.use_backend(emulated):
        dm = device_metric(fn)
        y_true, y_pred = on_device(emulated, *batch())
        graph, result = emulated.capture_graph(lambda: dm(y_true, y_pred))
        assert emulated.is_native(result) and result.shape == ()
        for _ in range(3):
            host_true, host_pred = batch()
            emulated.host_to_device(y_true, host_true)
            emulated.host_to_device(y_pred, host_pred)
            graph.replay()
            np.testing.assert_allclose(float(emulated.to_numpy(result)), fn(host_true, host_pred), rtol=1e-12, atol=0)
