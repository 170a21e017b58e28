"""SoftmaxCrossEntropy and MSE: values, gradients in float64, target forms, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.losses import MSE, SoftmaxCrossEntropy, get_loss
from gpunn.testing import gradcheck_loss


def test_softmax_cross_entropy_value_and_target_forms(backend):
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    labels = np.array([0, 1])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.log(p[[0, 1], labels]).mean()
    loss = SoftmaxCrossEntropy()
    assert loss.forward(logits, labels) == pytest.approx(expected, rel=1e-12)
    assert loss.forward(logits, labels.astype(np.float32)) == pytest.approx(expected, rel=1e-12)
    assert loss.forward(logits, np.eye(3)[labels]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), (p - np.eye(3)[labels]) / 2, rtol=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits(backend):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], np.float32)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(logits, np.array([0, 2]))
    assert np.isfinite(value) and value == pytest.approx(np.log(2) / 2, rel=1e-5)
    assert np.isfinite(backend.to_numpy(loss.backward())).all()


@pytest.mark.parametrize("target", [np.array([2, 0, 1, 1]), np.eye(3)[[2, 0, 1, 1]] * 0.9 + 0.1 / 3])
def test_softmax_cross_entropy_gradcheck(backend, target):
    assert gradcheck_loss(SoftmaxCrossEntropy(), np.random.default_rng(0).standard_normal((4, 3)), target)


def test_mse_matches_pytorch_mean_and_gradcheck(backend):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert MSE().forward(pred, target) == pytest.approx(((pred - target) ** 2).mean(), rel=1e-12)
    assert gradcheck_loss(MSE(), pred, target)


@pytest.mark.parametrize("target, words", [
    (np.array([0, 3]), r"labels outside \[0, 3\)"),
    (np.array([0, -1]), r"labels outside \[0, 3\)"),
    (np.array([0.5, 1.0]), "non-integer class labels"),
    (np.array([0, np.nan]), "argument 'target' contains NaN"),
    (np.array([0, 1, 2]), "must have 2 labels"),
    (np.zeros((2, 4)), "must be labels of shape"),
    (np.array(["a", "b"]), "argument 'target' must be numeric"),
])
def test_softmax_cross_entropy_bad_targets(target, words):
    with pytest.raises((ValueError, TypeError), match=words):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3), np.float32), target)


@pytest.mark.parametrize("pred, words", [
    (np.zeros((2, 3), np.int32), "argument 'pred' must be a floating-point array"),
    (np.zeros((0, 3), np.float32), "argument 'pred' has an empty batch"),
    (np.zeros(3, np.float32), r"argument 'pred' must have 2 dimensions \(N, classes\)"),
])
def test_softmax_cross_entropy_bad_pred(pred, words):
    with pytest.raises((ValueError, TypeError), match=words):
        SoftmaxCrossEntropy().forward(pred, np.zeros(len(pred), np.int64))


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match="must have the shape of pred"):
        MSE().forward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="contains NaN"):
        MSE().forward(np.zeros((2, 1), np.float32), np.array([[0.0], [np.nan]]))
    with pytest.raises(RuntimeError, match="called before forward"):
        MSE().backward()


def test_get_loss_by_name():
    assert isinstance(get_loss("softmax_cross_entropy"), SoftmaxCrossEntropy)
    assert isinstance(get_loss("mse"), MSE)
    with pytest.raises(ValueError, match="argument 'loss' must be a Loss or one of"):
        get_loss("nope")
