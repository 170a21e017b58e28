"""The backend's conv and pool ops against naive loops, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import conv2d_naive, pool_naive

conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 3), "c": st.integers(1, 3), "f": st.integers(1, 4),
    "h": st.integers(3, 9), "w": st.integers(3, 9),
    "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "ph": st.integers(0, 2), "pw": st.integers(0, 2),
    "dh": st.integers(1, 2), "dw": st.integers(1, 2),
})


@settings(max_examples=25, deadline=None)
@given(case=conv_cases)
def test_conv2d_forward_matches_naive(backend, case):
    c = case
    if c["h"] + 2 * c["ph"] < c["dh"] * (c["kh"] - 1) + 1 or c["w"] + 2 * c["pw"] < c["dw"] * (c["kw"] - 1) + 1:
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((c["n"], c["c"], c["h"], c["w"]))
    w = rng.standard_normal((c["f"], c["c"], c["kh"], c["kw"]))
    b = rng.standard_normal(c["f"])
    args = ((c["sh"], c["sw"]), (c["ph"], c["pw"]), (c["dh"], c["dw"]))
    y, _ = backend.conv2d_forward(backend.asarray(x), backend.asarray(w), backend.asarray(b), *args)
    np.testing.assert_allclose(backend.to_numpy(y), conv2d_naive(x, w, b, *args), rtol=1e-10, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(case=conv_cases)
def test_col2im_is_the_adjoint_of_im2col(backend, case):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly im2col's transpose."""
    c = case
    if c["h"] + 2 * c["ph"] < c["dh"] * (c["kh"] - 1) + 1 or c["w"] + 2 * c["pw"] < c["dw"] * (c["kw"] - 1) + 1:
        return
    rng = np.random.default_rng(1)
    shape = (c["n"], c["c"], c["h"], c["w"])
    args = (c["kh"], c["kw"], (c["sh"], c["sw"]), (c["ph"], c["pw"]), (c["dh"], c["dw"]))
    x = rng.standard_normal(shape)
    cols = backend.to_numpy(backend.im2col(backend.asarray(x), *args))
    probe = rng.standard_normal(cols.shape)
    back = backend.to_numpy(backend.col2im(backend.asarray(probe), shape, *args))
    np.testing.assert_allclose((cols * probe).sum(), (x * back).sum(), rtol=1e-10)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 3, 0), (3, 2, 0)])
def test_pool_forward_matches_naive(backend, mode, k, s, p):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    args = (k, k, (s, s), (p, p))
    if mode == "max":
        y, argmax = backend.maxpool2d_forward(backend.asarray(x), *args)
        flat = x.reshape(2, 3, -1)
        picked = np.take_along_axis(flat, backend.to_numpy(argmax).reshape(2, 3, -1), axis=2)
        np.testing.assert_array_equal(picked.reshape(y.shape), backend.to_numpy(y))
        assert backend.to_numpy(argmax).dtype == np.int32
    else:
        y = backend.avgpool2d_forward(backend.asarray(x), *args)
    np.testing.assert_allclose(backend.to_numpy(y), pool_naive(x, *args, mode), rtol=1e-6, atol=1e-6)


def test_maxpool_ties_go_to_first_offset(backend):
    x = np.ones((1, 1, 4, 4), np.float32)
    _, argmax = backend.maxpool2d_forward(backend.asarray(x), 2, 2, (2, 2), (0, 0))
    np.testing.assert_array_equal(backend.to_numpy(argmax)[0, 0], [[0, 2], [8, 10]])


def test_seeds_conv_example(backend):
    x = np.array([[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1]], np.float32)[None, None]
    w = np.array([[2, 0, 1], [0, 1, 2], [1, 0, 2]], np.float32)[None, None]
    y, _ = backend.conv2d_forward(backend.asarray(x), backend.asarray(w), None, (1, 1), (0, 0), (1, 1))
    np.testing.assert_array_equal(backend.to_numpy(y)[0, 0], [[15, 16], [6, 15]])
    y, _ = backend.conv2d_forward(backend.asarray(x), backend.asarray(w), None, (1, 1), (1, 1), (1, 1))
    assert backend.to_numpy(y).shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(backend.to_numpy(y)[0, 0, 0], [7, 12, 10, 2])


def test_seeds_maxpool_example(backend):
    x = np.array([[12, 20, 30, 0], [8, 12, 2, 0], [34, 70, 37, 4], [112, 100, 25, 12]], np.float32)[None, None]
    y, _ = backend.maxpool2d_forward(backend.asarray(x), 2, 2, (2, 2), (0, 0))
    np.testing.assert_array_equal(backend.to_numpy(y)[0, 0], [[20, 30], [112, 37]])
