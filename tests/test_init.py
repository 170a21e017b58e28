"""Initializers: names, aliases, fans for dense and conv kernels, variances."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import init


def test_fans_for_dense_conv_and_bias():
    assert init.compute_fans((30, 20)) == (30, 20)
    assert init.compute_fans((64, 16, 3, 5)) == (16 * 15, 64 * 15)
    assert init.compute_fans((7,)) == (7, 7)


@pytest.mark.parametrize("name, std", [
    ("glorot_normal", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("glorot_uniform", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("xavier_normal", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("he_normal", lambda fi, fo: np.sqrt(2 / fi)),
    ("kaiming_uniform", lambda fi, fo: np.sqrt(2 / fi)),
    ("lecun_normal", lambda fi, fo: np.sqrt(1 / fi)),
    ("lecun_uniform", lambda fi, fo: np.sqrt(1 / fi)),
    ("small_random", lambda fi, fo: 0.01),
])
@pytest.mark.parametrize("shape", [(400, 300), (64, 32, 5, 5)])
def test_std_matches_formula(name, std, shape):
    w = init.get_initializer(name)(shape, rng=np.random.default_rng(0))
    fan_in, fan_out = init.compute_fans(shape)
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.std() - std(fan_in, fan_out)) / std(fan_in, fan_out) < 0.03
    assert abs(w.mean()) < 0.05 * std(fan_in, fan_out) * 10


def test_uniform_limits():
    w = init.he_uniform((200, 100), rng=np.random.default_rng(0))
    assert np.abs(w).max() <= np.sqrt(6 / 200)
    w = init.uniform(0.3)((1000,), rng=np.random.default_rng(0))
    assert np.abs(w).max() <= 0.3 and np.abs(w).max() > 0.29


def test_constant_zeros_ones_normal():
    np.testing.assert_array_equal(init.zeros((2, 3)), 0)
    np.testing.assert_array_equal(init.ones((2,)), 1)
    np.testing.assert_array_equal(init.constant(0.5)((3,)), 0.5)
    w = init.normal(std=2.0)((20000,), rng=np.random.default_rng(0))
    assert abs(w.std() - 2.0) < 0.06
    assert init.get_initializer("normal")((5,)).shape == (5,)
    assert init.get_initializer("zeros") is init.zeros


def test_dtype_is_respected():
    assert init.he_normal((3, 3), dtype=np.float64).dtype == np.float64


def test_bad_inputs():
    with pytest.raises(ValueError, match="argument 'spec'"):
        init.get_initializer("bogus")
    with pytest.raises(ValueError, match="argument 'std' must be >= 0"):
        init.normal(-1.0)
    with pytest.raises(ValueError, match="argument 'limit' must be >= 0"):
        init.uniform(-1.0)
    with pytest.raises(TypeError, match="argument 'shape' must be a tuple of ints"):
        init.zeros(None)
    with pytest.raises(ValueError, match="non-negative sizes"):
        init.he_normal((-1, 3))
