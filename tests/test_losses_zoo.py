"""Loss zoo: values against hand formulas and the seeds' hinge examples, gradchecks for every loss
and reduction, stability at large logits, and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.losses import (MAE, MSE, BinaryCrossEntropy, Huber, MulticlassHinge, SoftmaxCrossEntropy, SumSquaredError,
                          get_loss)
from gpunn.testing import gradcheck_loss, numerical_grad

RNG = np.random.default_rng(0)
PRED = RNG.standard_normal((4, 3))
REG_TARGET = PRED + RNG.choice([-1, 1], (4, 3)) * RNG.uniform(0.1, 2.0, (4, 3))  # |diff| in [0.1, 2]
LABELS = np.array([0, 2, 1, 2])
BINARY = (RNG.uniform(size=(4, 3)) > 0.5).astype(np.float64)


def _hinge_pred():
    # margins s_j - s_y + 1 kept at least 0.05 away from the kink at 0
    pred = RNG.standard_normal((4, 3))
    for _ in range(100):
        m = pred - pred[np.arange(4), LABELS][:, None] + 1
        m[np.arange(4), LABELS] = 1
        if np.abs(m).min() > 0.05:
            return pred
        pred = RNG.standard_normal((4, 3))
    raise AssertionError("no kink-free sample")


HINGE_PRED = _hinge_pred()

# name -> (factory taking reduction, pred, target, unreduced reference, mean denominator)
CASES = {
    "mse": (lambda r: MSE(reduction=r), PRED, REG_TARGET, lambda p, t: (p - t) ** 2, 12),
    "mae": (lambda r: MAE(reduction=r), PRED, REG_TARGET, lambda p, t: np.abs(p - t), 12),
    "huber": (lambda r: Huber(0.7, reduction=r), PRED, REG_TARGET,
              lambda p, t: np.where(np.abs(p - t) <= 0.7, 0.5 * (p - t) ** 2, 0.7 * (np.abs(p - t) - 0.35)), 12),
    "sse": (lambda r: SumSquaredError(reduction=r), PRED, REG_TARGET, lambda p, t: 0.5 * ((t - p) ** 2).sum(axis=1), 4),
    "xent": (lambda r: SoftmaxCrossEntropy(reduction=r), PRED, LABELS,
             lambda p, t: -(p - np.log(np.exp(p).sum(axis=1, keepdims=True)))[np.arange(4), t], 4),
    "xent_smooth": (lambda r: SoftmaxCrossEntropy(label_smoothing=0.2, reduction=r), PRED, LABELS,
                    lambda p, t: -((0.8 * np.eye(3)[t] + 0.2 / 3) *
                                   (p - np.log(np.exp(p).sum(axis=1, keepdims=True)))).sum(axis=1), 4),
    "bce_logits": (lambda r: BinaryCrossEntropy(reduction=r), PRED * 3, BINARY,
                   lambda p, t: -(t * np.log(1 / (1 + np.exp(-p))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-p)))), 12),
    "bce_probs": (lambda r: BinaryCrossEntropy(from_logits=False, reduction=r), 1 / (1 + np.exp(-PRED)), BINARY,
                  lambda p, t: -(t * np.log(p) + (1 - t) * np.log(1 - p)), 12),
    "hinge": (lambda r: MulticlassHinge(reduction=r), HINGE_PRED, LABELS,
              lambda p, t: (np.maximum(0, p - p[np.arange(4), t][:, None] + 1)).sum(axis=1) - 1, 4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_for_each_reduction(backend, name):
    make, pred, target, ref, denom = CASES[name]
    per = ref(pred, target)
    assert make("mean").forward(pred, target) == pytest.approx(per.sum() / denom, rel=1e-12)
    assert make("sum").forward(pred, target) == pytest.approx(per.sum(), rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(make("none").forward(pred, target)), per, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck(backend, name, reduction):
    make, pred, target, _, _ = CASES[name]
    assert gradcheck_loss(make(reduction), pred, target)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_unreduced_with_upstream_gradient(backend, name):
    make, pred, target, ref, _ = CASES[name]
    loss = make("none")
    p = backend.asarray(np.array(pred, dtype=np.float64))
    weights = np.random.default_rng(7).standard_normal(ref(pred, target).shape)
    w = backend.asarray(weights)
    loss.forward(p, target)
    analytic = backend.to_numpy(loss.backward(w))
    numeric = numerical_grad(lambda: float(backend.to_numpy(loss.forward(p, target) * w).sum()), p)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    # without dloss: the gradient of the unreduced losses' sum
    loss.forward(p, target)
    summed = make("sum")
    summed.forward(p, target)
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), backend.to_numpy(summed.backward()), rtol=1e-12)


def test_backward_scalar_multiplier(backend):
    loss = MSE()
    loss.forward(PRED, REG_TARGET)
    g1 = backend.to_numpy(loss.backward())
    np.testing.assert_allclose(backend.to_numpy(loss.backward(3.0)), 3 * g1, rtol=1e-12)


def test_hinge_seed_examples(backend):
    # scores [13, -7, 11], true class 0, margin 10: max(0, -7-13+10) + max(0, 11-13+10) = 0 + 8
    assert MulticlassHinge(margin=10).forward(np.array([[13.0, -7.0, 11.0]]), np.array([0])) == pytest.approx(8.0)
    # scores (dog 3.76, cat -1.2), true class cat, margin 1: 3.76 - (-1.2) + 1 = 5.96
    assert MulticlassHinge(margin=1).forward(np.array([[3.76, -1.2]]), np.array([1])) == pytest.approx(5.96)
    # float labels and one-hot rows give the same
    assert MulticlassHinge(margin=10).forward(np.array([[13.0, -7.0, 11.0]]), np.array([0.0])) == pytest.approx(8.0)
    assert MulticlassHinge(margin=1).forward(np.array([[3.76, -1.2]]), np.array([[0, 1]])) == pytest.approx(5.96)
    loss = MulticlassHinge(margin=10)
    loss.forward(np.array([[13.0, -7.0, 11.0]]), np.array([0]))
    np.testing.assert_allclose(backend.to_numpy(loss.backward()), [[-1.0, 0.0, 1.0]])


def test_int_and_float_labels_agree(backend):
    for loss in [SoftmaxCrossEntropy(label_smoothing=0.1), MulticlassHinge()]:
        a = loss.forward(PRED, LABELS)
        b = loss.forward(PRED, LABELS.astype(np.float32))
        assert a == b


def test_label_smoothing_with_soft_targets_and_zero(backend):
    onehot = np.eye(3)[LABELS]
    assert SoftmaxCrossEntropy(label_smoothing=0.3).forward(PRED, onehot) == pytest.approx(
        SoftmaxCrossEntropy(label_smoothing=0.3).forward(PRED, LABELS), rel=1e-12)
    assert SoftmaxCrossEntropy(label_smoothing=0.0).forward(PRED, LABELS) == SoftmaxCrossEntropy().forward(PRED, LABELS)
    assert gradcheck_loss(SoftmaxCrossEntropy(label_smoothing=0.3), PRED, onehot)


def test_stable_at_large_logits_float32(backend):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype=np.float32)
    for loss, target in [(SoftmaxCrossEntropy(label_smoothing=0.1), np.array([1, 0])),
                         (BinaryCrossEntropy(), np.array([[1, 0, 1], [0, 1, 0]], np.float32)),
                         (MulticlassHinge(), np.array([0, 2])), (Huber(), np.zeros((2, 3), np.float32))]:
        value = loss.forward(logits, target)
        grad = backend.to_numpy(loss.backward())
        assert np.isfinite(value) and np.isfinite(grad).all(), type(loss).__name__
        assert grad.dtype == np.float32
    # the exact values: a confidently right BCE costs ~0, a confidently wrong one costs |z|
    bce = BinaryCrossEntropy(reduction="none")
    np.testing.assert_allclose(backend.to_numpy(bce.forward(np.array([[1e4, -1e4]], np.float32),
                                                            np.array([[1.0, 1.0]], np.float32))), [[0.0, 1e4]])
    assert BinaryCrossEntropy(from_logits=False).forward(np.array([[0.0, 1.0]], np.float32),
                                                         np.array([[1.0, 0.0]], np.float32)) > 10


def test_default_reductions():
    assert SumSquaredError().reduction == "sum"
    for cls in [MSE, MAE, Huber, SoftmaxCrossEntropy, BinaryCrossEntropy, MulticlassHinge]:
        assert cls().reduction == "mean"
    # the seeds' E = 1/2 sum (t - o)^2 over the two outputs of one sample
    assert SumSquaredError().forward(np.array([[0.75136507, 0.77292847]]), np.array([[0.01, 0.99]])) == \
        pytest.approx(0.298371109, rel=1e-8)


@pytest.mark.parametrize("name, cls", [("mae", MAE), ("huber", Huber), ("sse", SumSquaredError),
                                       ("binary_crossentropy", BinaryCrossEntropy), ("hinge", MulticlassHinge),
                                       ("mse", MSE), ("softmax_cross_entropy", SoftmaxCrossEntropy)])
def test_get_loss_names(name, cls):
    assert type(get_loss(name)) is cls


@pytest.mark.parametrize("make, err, words", [
    (lambda: MulticlassHinge(margin=-1.0), ValueError, "argument 'margin' must be a non-negative float"),
    (lambda: Huber(delta=0), ValueError, "argument 'delta' must be a positive float"),
    (lambda: Huber(delta=-1.0), ValueError, "argument 'delta'"),
    (lambda: SoftmaxCrossEntropy(label_smoothing=-0.1), ValueError, "argument 'label_smoothing'"),
    (lambda: SoftmaxCrossEntropy(label_smoothing=1.5), ValueError, r"argument 'label_smoothing' must be in \[0, 1\]"),
    (lambda: MSE(reduction="avg"), ValueError, "argument 'reduction' must be one of"),
    (lambda: BinaryCrossEntropy(eps=0.7), ValueError, "argument 'eps'"),
    (lambda: MulticlassHinge().forward(np.zeros((2, 3)), np.array([0, 3])), ValueError, r"labels outside \[0, 3\)"),
    (lambda: MulticlassHinge().forward(np.zeros((2, 3)), np.array([-1, 0])), ValueError, r"labels outside \[0, 3\)"),
    (lambda: MulticlassHinge().forward(np.zeros((2, 3)), np.array([0.5, 1])), ValueError, "non-integer"),
    (lambda: MulticlassHinge().forward(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError, "must be labels of shape"),
    (lambda: MulticlassHinge().forward(np.zeros((2, 3)), np.full((2, 3), 0.5)), ValueError, "one-hot rows"),
    (lambda: MulticlassHinge().forward(np.zeros(3), np.array([0])), ValueError, "must have 2 dimensions"),
    (lambda: BinaryCrossEntropy().forward(np.zeros((2, 2)), np.full((2, 2), 2.0)), ValueError,
     r"'target' must hold values in \[0, 1\]"),
    (lambda: BinaryCrossEntropy().forward(np.zeros((2, 2)), np.zeros((2, 3))), ValueError, "shape of pred"),
    (lambda: BinaryCrossEntropy(from_logits=False).forward(np.full((2, 2), 1.5), np.zeros((2, 2))), ValueError,
     "'pred' must hold probabilities"),
    (lambda: MAE().forward(np.zeros((2, 2)), np.array([[0.0, np.nan], [0, 0]])), ValueError, "contains NaN"),
    (lambda: Huber().forward(np.zeros((0, 2)), np.zeros((0, 2))), ValueError, "empty batch"),
    (lambda: SumSquaredError().forward(np.zeros((2, 2), np.int32), np.zeros((2, 2))), TypeError, "floating-point"),
    (lambda: MAE().backward(), RuntimeError, "called before forward"),
])
def test_bad_inputs(make, err, words):
    with pytest.raises(err, match=words):
        make()


def test_unreduced_backward_checks_dloss_shape():
    loss = SoftmaxCrossEntropy(reduction="none")
    loss.forward(PRED, LABELS)
    with pytest.raises(ValueError, match=r"argument 'dloss' must have the shape of the unreduced loss \(4,\)"):
        loss.backward(np.ones((4, 3)))
