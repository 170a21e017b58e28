"""Initializers: names, aliases, fans for dense and conv kernels, variances."""
from __future__ import annotations

import re

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


# -- hostile inputs: refused with the initializer's name, the argument and what was expected ------------
ALL_INITS = [init.zeros, init.ones, init.small_random, init.he_normal, init.glorot_uniform, init.lecun_normal,
             init.constant(0.5), init.normal(), init.uniform(), init.orthogonal()]


@pytest.mark.parametrize("fn", ALL_INITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(2.5,), (2.5, 3), (3, 2.0), (True, 3), (3, np.float64(2)), "ab", 5])
def test_shapes_that_are_not_ints_are_refused_not_truncated(fn, shape):
    # (2.5,) used to give a (2,) array and (True, 3) a (1, 3) one
    with pytest.raises(TypeError, match=rf"^{re.escape(fn.__name__)}: argument 'shape' must be a tuple of ints"):
        fn(shape)


@pytest.mark.parametrize("fn", ALL_INITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, bool, np.complex64, "bogus", None])
def test_non_float_dtypes_are_refused(fn, dtype):
    # an integer dtype used to truncate every weight to 0 (he_normal((3, 3), dtype=np.int32) was all zeros)
    with pytest.raises(TypeError, match=rf"^{re.escape(fn.__name__)}: argument 'dtype' must be a floating-point"):
        fn((4, 3), dtype=dtype)


@pytest.mark.parametrize("fn", ALL_INITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes_and_numpy_int_shapes_still_work(fn, dtype):
    w = fn((np.int64(4), 3), dtype=dtype, rng=np.random.default_rng(0))
    assert w.shape == (4, 3) and w.dtype == dtype and np.isfinite(w).all()


@pytest.mark.parametrize("make, name", [
    (lambda v: init.constant(v), "value"), (lambda v: init.normal(std=v), "std"),
    (lambda v: init.normal(mean=v), "mean"), (lambda v: init.uniform(v), "limit"),
    (lambda v: init.orthogonal(v), "gain")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan")])
def test_non_finite_parameters_are_refused(make, name, bad):
    # constant(nan) used to fill every weight with NaN, normal(std=inf) with inf
    with pytest.raises(ValueError, match=rf"argument '{name}' must be a finite float|argument '{name}'"):
        make(bad)


@pytest.mark.parametrize("make, name", [
    (lambda v: init.constant(v), "value"), (lambda v: init.normal(std=v), "std"),
    (lambda v: init.uniform(v), "limit"), (lambda v: init.orthogonal(v), "gain")])
@pytest.mark.parametrize("bad", ["0.5", None, True, [0.5]])
def test_non_number_parameters_are_refused(make, name, bad):
    with pytest.raises(TypeError, match=f"argument '{name}' must be a finite float"):
        make(bad)


def test_sign_constraints_and_numpy_scalars():
    with pytest.raises(ValueError, match="^normal: argument 'std' must be >= 0, got -0.1"):
        init.normal(-0.1)
    with pytest.raises(ValueError, match="^orthogonal: argument 'gain' must be a positive float"):
        init.orthogonal(0.0)
    # zero spread is allowed (a constant), and NumPy scalars count as numbers
    np.testing.assert_array_equal(init.normal(std=0.0, mean=np.float32(0.25))((3,)), 0.25)
    np.testing.assert_array_equal(init.uniform(np.float64(0))((3,)), 0)
    assert init.orthogonal(np.float32(2.0))((3, 3)).shape == (3, 3)
    np.testing.assert_array_equal(init.constant(np.int64(-2))((2,)), -2)


def test_values_that_overflow_the_dtype_are_refused():
    with pytest.raises(ValueError, match=r"^constant\(1e\+39\): the initial values overflow float32"):
        init.constant(1e39)((2,))
    with pytest.raises(ValueError, match="overflow float32"):
        init.normal(std=1e38, mean=3e38)((1000,), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(init.constant(1e39)((2,), dtype=np.float64), 1e39)  # float64 holds it


def test_bad_rng_and_fans_are_refused():
    with pytest.raises(TypeError, match="^he_normal: argument 'rng' must be a numpy.random.Generator or None"):
        init.he_normal((3, 3), rng=42)
    with pytest.raises(ValueError, match="^he_normal: argument 'fans' must be >= 0"):
        init.he_normal((3, 3), fans=(-1, 3))
    with pytest.raises(TypeError, match="^glorot_uniform: argument 'fans' must be an int or a pair of ints"):
        init.glorot_uniform((3, 3), fans=(1.5, 3))


def test_layers_still_build_with_every_named_initializer():
    from gpunn.layers import Conv2D, Dense
    for name in ("zeros", "ones", "he_normal", "orthogonal", "normal", "constant", "lecun_uniform"):
        Dense(4, kernel_initializer=name).build((3,))
        Conv2D(2, 3, kernel_initializer=name).build((1, 5, 5))
