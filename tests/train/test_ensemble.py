"""Ensemble turns each member's output into probabilities as the member's loss says (output_kind),
never from the loss's class name."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.losses import MSE, BinaryCrossEntropy, Loss, SoftmaxCrossEntropy


def _member(loss: Loss, units: int) -> Sequential:
    gpunn.manual_seed(0)
    model = Sequential([Dense(units, input_shape=(3,))])
    model.compile(loss=loss, optimizer="sgd")
    return model


X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("loss, units, expected", [
    (SoftmaxCrossEntropy(), 3, lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)),
    (BinaryCrossEntropy(), 1, _sigmoid),
    (BinaryCrossEntropy(from_logits=False), 1, lambda p: p),  # probabilities already: no second sigmoid
    (MSE(), 2, lambda v: v),
])
def test_members_outputs_are_read_as_their_loss_says(loss, units, expected):
    model = _member(loss, units)
    raw = model.predict(X).astype(np.float64)
    np.testing.assert_allclose(gpunn.Ensemble([model]).predict(X), expected(raw), rtol=1e-6, atol=1e-7)


def test_a_user_loss_on_logits_named_anything_is_read_by_its_output_kind():
    class Scores(Loss):  # no "softmax" or "crossentropy" in the name
        from_logits = True
        output_kind = "logits"

        def forward(self, pred, target):
            return SoftmaxCrossEntropy().forward(pred, target)

    model = _member(Scores(), 3)
    probs = gpunn.Ensemble([model]).predict(X)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
