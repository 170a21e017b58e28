"""Targets of shape (N,) for an output of shape (N, 1), accepted by the regression losses and
BinaryCrossEntropy as Keras accepts them (the same loss and gradient as (N, 1) targets); every
other mismatch stays an error."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.losses import MAE, MSE, BinaryCrossEntropy, Huber, SumSquaredError
from gpunn.testing import gradcheck_loss

PRED = np.random.default_rng(0).standard_normal((6, 1))
TARGET = np.random.default_rng(1).standard_normal(6)
LOSSES = [MSE, MAE, Huber, SumSquaredError, lambda: Huber(delta=0.5), BinaryCrossEntropy]
IDS = ["mse", "mae", "huber", "sse", "huber_half", "bce"]


def target_for(make):
    return (TARGET > 0).astype(np.float64) if make is BinaryCrossEntropy else TARGET


@pytest.mark.parametrize("make", LOSSES, ids=IDS)
def test_flat_targets_match_column_targets(backend, make):
    t = target_for(make)
    flat, column = make(), make()
    assert flat.forward(PRED, t) == column.forward(PRED, t[:, None])
    grad = flat.backward()
    assert tuple(grad.shape) == (6, 1)  # the gradient has pred's shape
    np.testing.assert_array_equal(backend.to_numpy(grad), backend.to_numpy(column.backward()))


@pytest.mark.parametrize("make", LOSSES, ids=IDS)
def test_gradcheck_with_flat_targets(backend, make):
    assert gradcheck_loss(make(), PRED, target_for(make))


@pytest.mark.parametrize("pred, target", [
    (np.zeros((6, 2)), np.zeros(6)),       # (N,) only stands for (N, 1)
    (np.zeros(6), np.zeros((6, 1))),       # not the other way round
    (np.zeros((6, 1)), np.zeros(5)),       # a different N
    (np.zeros((6, 1, 1)), np.zeros(6)),
])
@pytest.mark.parametrize("make", [MSE, MAE, Huber, SumSquaredError, BinaryCrossEntropy], ids=IDS[:4] + ["bce"])
def test_other_mismatches_stay_errors(make, pred, target):
    with pytest.raises(ValueError, match="argument 'target' must have the shape of pred"):
        make().forward(pred, target)
