"""Regularizers (L1, L2, L1L2 as kernel_regularizer) and constraints (MaxNorm as kernel_constraint)."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.constraints import MaxNorm, apply_constraints, get_constraint
from gpunn import Sequential
from gpunn.layers import Conv2D, Dense, ReLU, WeightNorm
from gpunn.losses import MSE
from gpunn.regularizers import L1, L2, L1L2, get_regularizer, regularization_loss
from gpunn.testing import numerical_grad


def _w(*shape, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape)
    w[np.abs(w) < 1e-3] = 0.1  # away from the L1 kink
    return w


@pytest.mark.parametrize("reg, penalty", [
    (L1(0.1), lambda w: 0.1 * np.abs(w).sum()),
    (L2(0.2), lambda w: 0.2 * (w ** 2).sum()),
    (L1L2(0.1, 0.2), lambda w: 0.1 * np.abs(w).sum() + 0.2 * (w ** 2).sum()),
])
def test_penalty_and_gradient(backend, reg, penalty):
    w = _w(4, 3)
    wb = backend.asarray(w)
    assert reg(wb) == pytest.approx(penalty(w), rel=1e-12)
    numeric = numerical_grad(lambda: reg.penalty(wb), wb)
    np.testing.assert_allclose(backend.to_numpy(reg.gradient(wb)), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("make", [lambda r: Dense(3, kernel_regularizer=r),
                                  lambda r: Conv2D(2, 2, kernel_regularizer=r)], ids=["dense", "conv"])
def test_regularizer_gradient_joins_param_grad(backend, make):
    reg = L1L2(0.05, 0.1)
    layer = make(reg)
    plain = make(None)
    x = _w(2, 2, 3, 3, seed=1) if isinstance(layer, Conv2D) else _w(4, 5, seed=1)
    layer.forward(x)
    plain.forward(x)
    plain.params["weight"].data[...] = layer.params["weight"].data
    dy = backend.asarray(_w(*layer.forward(x).shape, seed=2))
    layer.forward(x)
    layer.backward(dy)
    plain.forward(x)
    plain.backward(dy)
    w = layer.params["weight"].data
    np.testing.assert_allclose(backend.to_numpy(layer.params["weight"].grad),
                               backend.to_numpy(plain.params["weight"].grad + reg.gradient(w)), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(layer.params["bias"].grad),
                               backend.to_numpy(plain.params["bias"].grad), rtol=1e-12)


def test_total_objective_gradchecks(backend):
    # loss + model.regularization_loss(): its gradient is exactly what backward leaves in param.grad
    model = Sequential([Dense(4, activation="tanh", kernel_regularizer=L2(0.3)), Dense(2, kernel_regularizer=L1(0.2))])
    model.to_dtype(np.float64)
    x, y = _w(5, 3, seed=3), _w(5, 2, seed=4)
    loss = MSE()

    def objective():
        return loss.forward(model.forward(x), y) + model.regularization_loss()

    model.zero_grad()
    objective()
    model.backward(loss.backward())
    for p in model.parameters():
        numeric = numerical_grad(objective, p.data)
        np.testing.assert_allclose(backend.to_numpy(p.grad), numeric, rtol=1e-5, atol=1e-7, err_msg=p.name)


def test_regularization_loss_sums_every_layer(backend):
    model = Sequential([Conv2D(2, 2, kernel_regularizer=L2(0.1)), ReLU(),
                        WeightNorm(Conv2D(2, 1, kernel_regularizer="l1"))])
    model.forward(_w(1, 2, 4, 4))
    w0 = backend.to_numpy(model.layers[0].params["weight"].data).astype(np.float64)
    w2 = backend.to_numpy(model.layers[2].layer.params["weight"].data).astype(np.float64)
    expected = 0.1 * (w0 ** 2).sum() + 0.01 * np.abs(w2).sum()
    assert model.regularization_loss() == pytest.approx(expected, rel=1e-5)
    assert regularization_loss(model) == model.regularization_loss()
    assert Sequential([Dense(2)]).regularization_loss() == 0.0


def test_get_regularizer():
    assert get_regularizer(None) is None
    assert isinstance(get_regularizer("l2"), L2) and get_regularizer("l2").l2 == 0.01
    assert isinstance(get_regularizer("l1"), L1)
    both = get_regularizer("l1_l2")
    assert both.l1 == both.l2 == 0.01
    reg = L1(0.5)
    assert get_regularizer(reg) is reg


@pytest.mark.parametrize("make, words", [
    (lambda: L1(-0.1), "argument 'l' must be a non-negative float"),
    (lambda: L2(-1), "argument 'l' must be a non-negative float"),
    (lambda: L1L2(0.1, -0.1), "argument 'l2' must be a non-negative float"),
    (lambda: L1L2(float("nan")), "argument 'l1'"),
    (lambda: L2("big"), "argument 'l'"),
    (lambda: get_regularizer("l3"), "argument 'kernel_regularizer' must be None, a Regularizer"),
    (lambda: Dense(3, kernel_regularizer=0.1), "argument 'kernel_regularizer'"),
])
def test_regularizer_bad_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


# -- constraints ----------------------------------------------------------------------------------
def test_maxnorm_rescales_only_long_columns(backend):
    w = np.array([[3.0, 0.1, 0.0], [4.0, 0.2, 0.0]])  # column norms 5, ~0.22, 0
    out = backend.to_numpy(MaxNorm(2.0)(backend.asarray(w)))
    np.testing.assert_allclose(out[:, 0], [1.2, 1.6])
    np.testing.assert_array_equal(out[:, 1:], w[:, 1:])
    conv_w = _w(4, 3, 2, 2) * 5
    out = backend.to_numpy(MaxNorm(1.5, axis=(1, 2, 3))(backend.asarray(conv_w)))
    np.testing.assert_allclose(np.sqrt((out ** 2).sum(axis=(1, 2, 3))), 1.5)


def test_kernel_constraint_is_listed_and_applied(backend):
    model = Sequential([Dense(3, kernel_constraint=MaxNorm(0.5)), ReLU(),
                        Conv2D(2, 1, kernel_constraint="max_norm"), WeightNorm(Dense(2, kernel_constraint=MaxNorm(1)))])
    model.layers[0].forward(_w(2, 4))
    model.layers[2].forward(_w(1, 3, 2, 2))
    model.layers[3].forward(_w(2, 5))
    pairs = model.constraints()
    # the WeightNorm-wrapped weight is derived from g and v, so its constraint is not listed
    assert [p.name for p, _ in pairs] == ["weight", "weight"]
    assert pairs[0][0] is model.layers[0].params["weight"]
    w = model.layers[0].params["weight"]
    w.data[...] = w.data * 10
    data_before = w.data
    apply_constraints(model)
    assert w.data is data_before  # in place: optimizer views stay valid
    assert np.sqrt((backend.to_numpy(w.data) ** 2).sum(axis=0)).max() <= 0.5 + 1e-6
    assert Dense(2).constraints() == []


@pytest.mark.parametrize("make, err, words", [
    (lambda: MaxNorm(0), ValueError, "argument 'max_value' must be a positive float"),
    (lambda: MaxNorm(-2.0), ValueError, "argument 'max_value'"),
    (lambda: MaxNorm(2.0, axis="rows"), TypeError, "argument 'axis' must be an int or a tuple"),
    (lambda: MaxNorm(2.0, axis=2)(np.ones((3, 3))), ValueError, "argument 'axis'.*out of range"),
    (lambda: get_constraint(3), ValueError, "argument 'kernel_constraint'"),
])
def test_constraint_bad_arguments(make, err, words):
    with pytest.raises(err, match=words):
        make()
