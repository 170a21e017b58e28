"""The custom-loss example of the README, run as written: a Loss subclass that computes its
unreduced loss and gradient and calls `reduce`, gradchecked in float64 for every reduction,
trained through compile/fit; and one that implements backward itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.losses import Loss
from gpunn.testing import gradcheck_loss


# -- the README example, verbatim -------------------------------------------------------------------
class LogCosh(Loss):
    """log(cosh(pred - target)), averaged over all elements: like MSE near 0, like MAE far away."""

    from_logits = False  # pred is compared with the target as it is (the default, said out loud)

    def forward(self, pred, target):
        pred = self.check_pred(pred)                 # a float array on the current backend
        diff = pred - self.check_target(target, pred)
        xp = gpunn.get_backend().xp
        a = xp.abs(diff)
        per = a + xp.log1p(xp.exp(-2 * a)) - math.log(2)   # log(cosh(d)), never overflows
        return self.reduce(per, xp.tanh(diff), count=diff.size)  # backward() returns tanh(d) / count
# -- end of the example ---------------------------------------------------------------------------


class ScaledAbs(Loss):
    """A loss that implements backward itself (reduction "mean" only, as it says)."""

    def forward(self, pred, target):
        pred = self.check_pred(pred)
        self._diff = pred - self.check_target(target, pred)
        return float(abs(self._diff).sum()) * 2 / self._diff.size

    def backward(self, dloss=None):
        xp = gpunn.get_backend().xp
        return xp.sign(self._diff) * 2 / self._diff.size * (1.0 if dloss is None else float(dloss))


PRED = np.random.default_rng(0).standard_normal((5, 3)) * 3
TARGET = np.random.default_rng(1).standard_normal((5, 3))


def test_the_example_computes_log_cosh(backend):
    expected = np.log(np.cosh(PRED - TARGET))
    assert LogCosh().forward(PRED, TARGET) == pytest.approx(expected.mean(), rel=1e-12)
    assert LogCosh(reduction="sum").forward(PRED, TARGET) == pytest.approx(expected.sum(), rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(LogCosh(reduction="none").forward(PRED, TARGET)), expected, rtol=1e-12)
    big = LogCosh().forward(np.array([[1e4]], np.float32), np.array([[0.0]]))
    assert big == pytest.approx(1e4 - math.log(2), rel=1e-6)  # no overflow in float32


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_example_gradchecks(backend, reduction):
    assert gradcheck_loss(LogCosh(reduction=reduction), PRED, TARGET)


def test_the_example_takes_the_upstream_gradient_unreduced(backend):
    loss = LogCosh(reduction="none")
    loss.forward(PRED, TARGET)
    dloss = np.arange(15.0).reshape(5, 3)
    np.testing.assert_allclose(backend.to_numpy(loss.backward(backend.asarray(dloss))),
                               np.tanh(PRED - TARGET) * dloss, rtol=1e-12)


def test_the_example_trains_a_model(backend):
    gpunn.manual_seed(0)
    x = np.random.default_rng(2).standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)      # targets (N,) for the (N, 1) output
    model = Sequential([Dense(1, input_shape=(3,))])
    model.compile(loss=LogCosh(), optimizer="sgd", lr=0.5)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.01 * first


def test_a_loss_with_its_own_backward_gradchecks(backend):
    assert gradcheck_loss(ScaledAbs(), PRED, TARGET)


def test_the_base_refuses_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"^LogCosh.backward: called before forward\(\)"):
        LogCosh().backward()
    with pytest.raises(NotImplementedError):
        Loss().forward(PRED, TARGET)
