"""gpunn.metrics against hand-computed values and sklearn, plus bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import metrics


def test_accuracy_labels_and_one_hot():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert metrics.accuracy(labels, scores) == 0.75
    assert metrics.accuracy(np.eye(2)[labels], scores) == 0.75


def test_top_k_accuracy_matches_sorting():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 6))
    labels = rng.integers(0, 6, size=50)
    for k in (1, 2, 3, 6):
        topk = np.argsort(-scores, axis=1)[:, :k]
        expected = np.mean([labels[i] in topk[i] for i in range(50)])
        assert metrics.top_k_accuracy(labels, scores, k=k) == pytest.approx(expected)
    assert metrics.top_k_accuracy(labels, scores, k=1) == metrics.accuracy(labels, scores)


def test_binary_accuracy_threshold():
    pred = np.array([[0.2, 0.7], [0.9, 0.4]])
    true = np.array([[0, 1], [1, 1]])
    assert metrics.binary_accuracy(true, pred) == 0.75
    assert metrics.binary_accuracy(true, pred, threshold=0.1) == 0.75  # 0.2>0.1 wrong, 0.4>0.1 right
    assert metrics.binary_accuracy(true, pred, threshold=0.95) == 0.25


def test_mse_mae():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.5, 2.0], [2.0, 6.0]])
    assert metrics.mse(a, b) == pytest.approx((0.25 + 0 + 1 + 4) / 4)
    assert metrics.mae(a, b) == pytest.approx((0.5 + 0 + 1 + 2) / 4)


def test_confusion_matrix_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, size=80)
    scores = rng.normal(size=(80, 4))
    cm = metrics.confusion_matrix(true, scores)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(true, scores.argmax(1), labels=range(4)))
    assert cm.sum() == 80
    np.testing.assert_array_equal(metrics.confusion_matrix(true, scores.argmax(1), num_classes=4), cm)


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.accuracy(np.array([0, 1]), np.zeros((3, 2))), "samples"),
    (lambda: metrics.accuracy(np.array([0, 5]), np.zeros((2, 2))), "outside"),
    (lambda: metrics.accuracy(np.array([0, 1]), np.zeros(2)), "y_pred"),
    (lambda: metrics.accuracy(np.zeros(0), np.zeros((0, 2))), "at least one sample"),
    (lambda: metrics.accuracy(np.array([0, 1]), np.array([[np.nan, 1], [0, 1]])), "NaN"),
    (lambda: metrics.accuracy(np.array([0.5, 1]), np.zeros((2, 2))), "non-integer"),
    (lambda: metrics.top_k_accuracy(np.array([0]), np.zeros((1, 2)), k=0), "'k'"),
    (lambda: metrics.binary_accuracy(np.zeros((2, 2)), np.zeros((3, 2))), "y_true"),
    (lambda: metrics.binary_accuracy(np.zeros(2), np.zeros(2), threshold=float("nan")), "threshold"),
    (lambda: metrics.mse(np.zeros(3), np.zeros(4)), "shape"),
    (lambda: metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), num_classes=2), "outside"),
    (lambda: metrics.confusion_matrix(np.array([0, 1]), np.array([0, 1]), num_classes=0), "num_classes"),
    (lambda: metrics.get_metric("accuracyy"), "one of"),
])
def test_bad_inputs(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_metric_type_errors():
    with pytest.raises(TypeError, match="numeric"):
        metrics.accuracy(np.array(["a", "b"]), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="str or a callable"):
        metrics.get_metric(3)


def test_metrics_take_tensors_through_to_host():
    """A torch tensor (DLPack) is read like an array, as every other gpunn entry point reads it."""
    torch = pytest.importorskip("torch")
    y = torch.tensor([0, 1, 1, 2])
    pred = torch.tensor([[2.0, 0.1, 0.0], [0.0, 1.0, 0.2], [0.3, 0.1, 2.0], [0.0, 0.0, 1.0]])
    assert metrics.accuracy(y, pred) == pytest.approx(0.75)
