"""Initializer zoo: every initializer's empirical std against its formula (through the layers too),
orthogonal(gain), and the symmetry failure of zeros/constant initialization."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import init
from gpunn import Sequential
from gpunn.layers import Conv2D, Dense
from gpunn.losses import MSE

STD = {
    "glorot_normal": lambda fi, fo: np.sqrt(2 / (fi + fo)),
    "glorot_uniform": lambda fi, fo: np.sqrt(2 / (fi + fo)),
    "xavier_normal": lambda fi, fo: np.sqrt(2 / (fi + fo)),
    "xavier_uniform": lambda fi, fo: np.sqrt(2 / (fi + fo)),
    "he_normal": lambda fi, fo: np.sqrt(2 / fi),
    "he_uniform": lambda fi, fo: np.sqrt(2 / fi),
    "kaiming_normal": lambda fi, fo: np.sqrt(2 / fi),
    "kaiming_uniform": lambda fi, fo: np.sqrt(2 / fi),
    "lecun_normal": lambda fi, fo: np.sqrt(1 / fi),
    "lecun_uniform": lambda fi, fo: np.sqrt(1 / fi),
    "small_random": lambda fi, fo: 0.01,
    "normal": lambda fi, fo: 0.05,
    "uniform": lambda fi, fo: 0.05 / np.sqrt(3),
    "orthogonal": lambda fi, fo: 1 / np.sqrt(max(fi, fo)),
}


@pytest.mark.parametrize("name", sorted(STD))
@pytest.mark.parametrize("shape", [(512, 256), (256, 512), (64, 32, 3, 3)])
def test_empirical_std_within_3_percent(name, shape):
    w = init.get_initializer(name)(shape, rng=np.random.default_rng(0))
    fan_in, fan_out = init.compute_fans(shape)
    if name == "orthogonal":  # PyTorch's flattening: (shape[0], prod(rest))
        fan_in, fan_out = shape[0], int(np.prod(shape[1:]))
    assert w.shape == shape
    assert abs(w.std() / STD[name](fan_in, fan_out) - 1) < 0.03
    assert abs(w.mean()) < 0.05 * w.std()


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "lecun_normal", "orthogonal"])
def test_layers_pass_the_right_fans(name):
    dense = Dense(300, kernel_initializer=name)
    dense.build((400,))
    w = dense.params["weight"].data
    fi, fo = 400, 300
    if name == "orthogonal":
        fi, fo = w.shape[0], w.shape[1]
    assert abs(w.std() / STD[name](fi, fo) - 1) < 0.03
    conv = Conv2D(64, 3, kernel_initializer=name)
    conv.build((32, 8, 8))
    w = conv.params["weight"].data
    fi, fo = 32 * 9, 64 * 9
    if name == "orthogonal":
        fi, fo = 64, 32 * 9
    assert abs(w.std() / STD[name](fi, fo) - 1) < 0.03


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (8, 3, 2, 2)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthogonal(shape, gain):
    w = init.orthogonal(gain)(shape, dtype=np.float64, rng=np.random.default_rng(1))
    m = w.reshape(shape[0], -1)
    small = min(m.shape)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(small), atol=1e-12)


def test_orthogonal_by_name_seeded_and_bad_inputs():
    a = init.get_initializer("orthogonal")((6, 4), rng=np.random.default_rng(3))
    b = init.orthogonal()((6, 4), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    with pytest.raises(ValueError, match="argument 'gain' must be a positive float"):
        init.orthogonal(-1.0)
    with pytest.raises(ValueError, match="argument 'gain'"):
        init.orthogonal(float("inf"))
    with pytest.raises(ValueError, match="argument 'shape' must have at least 2 dimensions"):
        init.orthogonal()((5,))
    with pytest.raises(TypeError, match="argument 'shape' must be a tuple of ints"):
        init.orthogonal()(None)


def _train_mlp(kernel_initializer, steps=5, lr=0.5):
    """A 3-4(sigmoid)-2 MLP trained by hand-written SGD (p.data -= lr * p.grad) on random data."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3))
    y = rng.standard_normal((16, 2))
    model = Sequential([Dense(4, activation="sigmoid", kernel_initializer=kernel_initializer),
                        Dense(2, kernel_initializer=kernel_initializer)])
    loss = MSE()
    model.forward(x)
    w0 = np.array(model.layers[0].params["weight"].data, copy=True)
    for _ in range(steps):
        model.zero_grad()
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        for p in model.parameters():
            p.data -= lr * p.grad
    hidden = np.asarray(model.layers[0].forward(x))
    return model, w0, hidden


@pytest.mark.parametrize("kernel_initializer", ["zeros", init.constant(0.3)], ids=["zeros", "constant"])
def test_symmetric_init_leaves_hidden_units_identical(kernel_initializer):
    model, w0, hidden = _train_mlp(kernel_initializer)
    w1 = np.asarray(model.layers[0].params["weight"].data)
    w2 = np.asarray(model.layers[1].params["weight"].data)
    # every hidden unit has the same incoming weights, the same outgoing weights and the same output
    np.testing.assert_allclose(w1, w1[:, :1].repeat(4, axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w2, w2[:1].repeat(4, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(hidden, hidden[:, :1].repeat(4, axis=1), rtol=0, atol=1e-12)
    # ...although training did move the weights: it is symmetry, not a frozen network
    assert np.abs(w2).max() > 1e-3
    if not isinstance(kernel_initializer, str):
        assert np.abs(w1 - w0).max() > 1e-4


def test_random_init_breaks_the_symmetry():
    model, _, hidden = _train_mlp("glorot_uniform")
    w1 = np.asarray(model.layers[0].params["weight"].data)
    assert np.abs(w1 - w1[:, :1]).max() > 1e-2
    assert np.abs(hidden - hidden[:, :1]).max() > 1e-2
