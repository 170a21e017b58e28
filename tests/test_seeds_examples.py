"""The lecture notes' worked examples, computed through the public API."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import Sequential
from gpunn.layers import Dense, Sigmoid
from gpunn.losses import MSE


def test_chain_rule_on_f_equals_wx_plus_b():
    """f = w*x + b with w=-2, x=5, b=3: f=-7, df/dw = x = 5, df/dx = w = -2, df/db = 1."""
    layer = Dense(1, input_shape=(1,), kernel_initializer=lambda s, **k: np.full(s, -2.0, np.float32),
                  bias_initializer=lambda s, **k: np.full(s, 3.0, np.float32))
    y = layer.forward(np.array([[5.0]], np.float32))
    assert float(y[0, 0]) == -7.0
    dx = layer.backward(np.ones((1, 1), np.float32))
    assert float(dx[0, 0]) == -2.0
    assert float(layer.params["weight"].grad[0, 0]) == 5.0
    assert float(layer.params["bias"].grad[0]) == 1.0


def test_two_two_two_sigmoid_network(backend):
    """Inputs .05/.1, w1..w4=.15,.2,.25,.3, b1=.35, w5..w8=.4,.45,.5,.55, b2=.6, targets .01/.99."""
    hidden = Dense(2, activation="sigmoid")
    out = Dense(2, activation="sigmoid")
    model = Sequential([hidden, out])
    x = np.array([[0.05, 0.10]])
    model.to_dtype(np.float64)
    model.forward(x)
    # weight[i, j] connects input i to unit j: h1 = w1*i1 + w2*i2, h2 = w3*i1 + w4*i2
    model.load_state_dict({
        "0.weight": np.array([[0.15, 0.25], [0.20, 0.30]]), "0.bias": np.array([0.35, 0.35]),
        "1.weight": np.array([[0.40, 0.50], [0.45, 0.55]]), "1.bias": np.array([0.60, 0.60]),
    })
    target = np.array([[0.01, 0.99]])
    o = model.forward(x, training=True)
    # The seeds' loss is 1/2 * sum (t - o)^2; MSE averages over the 2 outputs, so E_total = MSE.
    loss = MSE()
    e_total = loss.forward(o, target)
    assert e_total == pytest.approx(0.298371, abs=5e-7)
    model.zero_grad()
    model.backward(loss.backward())
    assert float(out.params["weight"].grad[0, 0]) == pytest.approx(0.082167, abs=5e-7)  # dE/dw5


def test_sigmoid_layer_standalone_matches_formula(backend):
    x = np.linspace(-3, 3, 7)[None]
    y = backend.to_numpy(Sigmoid().to_dtype(np.float64).forward(x))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-12)
