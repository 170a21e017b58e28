"""NLLLoss, PyTorch's: values on log-probabilities, LogSoftmax + NLLLoss = SoftmaxCrossEntropy,
class weights with PyTorch's weighted mean, reductions, float64 gradchecks, configs, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.io.config import object_from_config, object_to_config
from gpunn.layers import LogSoftmax
from gpunn.losses import NLLLoss, SoftmaxCrossEntropy, get_loss
from gpunn.testing import gradcheck_loss

RNG = np.random.default_rng(1)
LOGITS = RNG.standard_normal((6, 3))
LOG_P = LOGITS - np.log(np.exp(LOGITS).sum(axis=1, keepdims=True))
LABELS = np.array([0, 2, 1, 1, 0, 2])
WEIGHT = (0.5, 2.0, 1.0)


def test_declarations_and_names():
    loss = NLLLoss()
    assert loss.from_logits is True and loss.output_kind == "logits"  # softmax(log p) = p
    assert loss.reduction == "mean" and loss.weight is None
    for name in ("nll", "nll_loss", "negative_log_likelihood"):
        assert type(get_loss(name)) is NLLLoss


def test_value_and_gradient_are_pytorchs(backend):
    loss = NLLLoss()
    rows = np.arange(6)
    assert loss.forward(LOG_P, LABELS) == pytest.approx(-LOG_P[rows, LABELS].mean(), rel=1e-14)
    expected = np.zeros((6, 3))
    expected[rows, LABELS] = -1 / 6
    np.testing.assert_array_equal(backend.to_numpy(loss.backward()), expected)


def test_log_softmax_then_nll_is_softmax_cross_entropy(backend):
    layer = LogSoftmax()
    layer.to_dtype("float64")
    x = backend.asarray(LOGITS)
    nll = NLLLoss()
    value = nll.forward(layer.forward(x), LABELS)
    dx = backend.to_numpy(layer.backward(nll.backward()))
    ref = SoftmaxCrossEntropy()
    assert value == pytest.approx(ref.forward(LOGITS, LABELS), rel=1e-12)
    np.testing.assert_allclose(dx, backend.to_numpy(ref.backward()), rtol=1e-12, atol=1e-15)


def test_class_weights_take_pytorchs_weighted_mean(backend):
    """mean = sum_i w[y_i] * l_i / sum_i w[y_i] (torch.nn.NLLLoss(weight=...))."""
    w = np.asarray(WEIGHT)[LABELS]
    rows = np.arange(6)
    per = -w * LOG_P[rows, LABELS]
    assert NLLLoss(weight=WEIGHT).forward(LOG_P, LABELS) == pytest.approx(per.sum() / w.sum(), rel=1e-14)
    assert NLLLoss(weight=np.array(WEIGHT), reduction="sum").forward(LOG_P, LABELS) == pytest.approx(per.sum(),
                                                                                                       rel=1e-14)
    unreduced = NLLLoss(weight=list(WEIGHT), reduction="none")
    np.testing.assert_allclose(backend.to_numpy(unreduced.forward(LOG_P, LABELS)), per, rtol=1e-14)


@pytest.mark.parametrize("make", [lambda: NLLLoss(), lambda: NLLLoss(weight=WEIGHT), lambda: NLLLoss(reduction="sum"),
                                  lambda: NLLLoss(weight=WEIGHT, reduction="sum")],
                         ids=["plain", "weighted", "sum", "weighted_sum"])
def test_gradcheck(backend, make):
    assert gradcheck_loss(make(), LOG_P, LABELS)


def test_reduction_none_takes_the_upstream_gradient(backend):
    loss = NLLLoss(reduction="none")
    loss.forward(LOG_P, LABELS)
    dloss = np.arange(1.0, 7.0)
    expected = np.zeros((6, 3))
    expected[np.arange(6), LABELS] = -dloss
    np.testing.assert_array_equal(backend.to_numpy(loss.backward(backend.asarray(dloss))), expected)


def test_config_round_trip():
    again = object_from_config(object_to_config(NLLLoss(weight=WEIGHT, reduction="sum")))
    assert type(again) is NLLLoss and again.weight == WEIGHT and again.reduction == "sum"


@pytest.mark.parametrize("make, err, words", [
    (lambda: NLLLoss(weight=(1.0, -1.0)), ValueError, r"^NLLLoss: argument 'weight\[1\]' must be a non-negative float"),
    (lambda: NLLLoss(weight=()), ValueError, "argument 'weight' must hold one weight per class, got none"),
    (lambda: NLLLoss(weight="abc"), TypeError, "argument 'weight' must be a list, tuple or 1-D array"),
    (lambda: NLLLoss(weight=(1.0, float("nan"))), ValueError, r"argument 'weight\[1\]'"),
    (lambda: NLLLoss(reduction="max"), ValueError, "argument 'reduction' must be one of"),
])
def test_bad_constructor_arguments(make, err, words):
    with pytest.raises(err, match=words):
        make()


@pytest.mark.parametrize("loss, target, words", [
    (NLLLoss(), LABELS + 1, r"labels outside \[0, 3\)"),
    (NLLLoss(), LABELS[:4], "must be 6 integer class labels"),
    (NLLLoss(), np.eye(3)[LABELS], "must be 6 integer class labels"),
    (NLLLoss(weight=(1.0, 2.0)), LABELS, "argument 'pred' has 3 classes but 'weight' has 2"),
    (NLLLoss(weight=(0.0, 1.0, 0.0)), np.array([0, 2, 0, 2, 0, 2]), "weights of this batch's labels sum to 0"),
])
def test_bad_forward_inputs(loss, target, words):
    with pytest.raises(ValueError, match=words):
        loss.forward(LOG_P, target)
