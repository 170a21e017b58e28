"""The NumPy backend's CPU fast paths agree with the generic ops (float64, tight tolerance), keep
max-pool's argmax contract, and fall back to the generic op where they do not apply."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend.cpu.backend import NumpyBackend
from gpunn.backend.cpu.conv import _FrameCache
from gpunn import Sequential
from gpunn.layers import Conv2D, MaxPool2D
from gpunn.testing import gradcheck

FAST, GENERIC = NumpyBackend(), NumpyBackend(fast_paths=False)
RTOL, ATOL = 1e-12, 1e-12

# (N, C, H, W), (F, kh, kw), padding, dilation
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3), (1, 1), (1, 1)),
    ((1, 1, 9, 9), (2, 5, 5), (2, 2), (1, 1)),
    ((3, 2, 8, 7), (3, 2, 3), (0, 1), (1, 1)),
    ((2, 2, 9, 10), (2, 3, 3), (2, 1), (2, 2)),
    ((2, 4, 5, 5), (3, 5, 5), (0, 0), (1, 1)),   # output 1x1
    ((2, 3, 4, 4), (5, 1, 1), (0, 0), (1, 1)),   # 1x1 conv
]


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
def test_conv_forward_and_backward_match_generic(case, layout):
    xs, (f, kh, kw), pad, dil = case
    x = _rand(xs, 0)
    if layout == "channel_major":  # what the fast conv and pool hand to the next layer
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    w, b = _rand((f, xs[1], kh, kw), 1), _rand((f,), 2)
    geo = ((1, 1), pad, dil)
    y, cache = FAST.conv2d_forward(x, w, b, *geo)
    y_ref, cols = GENERIC.conv2d_forward(x, w, b, *geo)
    assert isinstance(cache, _FrameCache)
    assert y.shape == y_ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    dy = _rand(y.shape, 3)
    for need_dx in (True, False):
        dx, dw, db = FAST.conv2d_backward(dy, x.shape, w, cache, *geo, need_dx=need_dx)
        dx_ref, dw_ref, db_ref = GENERIC.conv2d_backward(dy, x.shape, w, cols, *geo, need_dx=need_dx)
        np.testing.assert_allclose(dw, dw_ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(db, db_ref, rtol=RTOL, atol=ATOL)
        if need_dx:
            assert dx.shape == x.shape
            np.testing.assert_allclose(dx, dx_ref, rtol=RTOL, atol=ATOL)
        else:
            assert dx is None


def test_conv_backward_is_repeatable_with_reused_scratch():
    """Scratch buffers are reused across calls: a second, different call must not see the first's data."""
    x1, x2 = _rand((2, 2, 6, 6), 0), _rand((2, 2, 6, 6), 1)
    w = _rand((3, 2, 3, 3), 2)
    geo = ((1, 1), (1, 1), (1, 1))
    _, c1 = FAST.conv2d_forward(x1, w, None, *geo)
    _, c2 = FAST.conv2d_forward(x2, w, None, *geo)
    dy = _rand((2, 3, 6, 6), 3)
    first = FAST.conv2d_backward(dy, x1.shape, w, c1, *geo)
    FAST.conv2d_backward(dy * 7.0, x2.shape, w, c2, *geo)
    again = FAST.conv2d_backward(dy, x1.shape, w, c1, *geo)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_conv_float32_stays_float32():
    x, w = _rand((2, 3, 8, 8), 0).astype(np.float32), _rand((4, 3, 3, 3), 1).astype(np.float32)
    y, cache = FAST.conv2d_forward(x, w, np.zeros(4, np.float32), (1, 1), (1, 1), (1, 1))
    dx, dw, db = FAST.conv2d_backward(np.ones_like(y), x.shape, w, cache, (1, 1), (1, 1), (1, 1))
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32


def test_strided_conv_takes_the_generic_path():
    x, w = _rand((2, 2, 9, 9), 0), _rand((3, 2, 3, 3), 1)
    y, cols = FAST.conv2d_forward(x, w, None, (2, 2), (1, 1), (1, 1))
    assert not isinstance(cols, _FrameCache)
    np.testing.assert_allclose(y, GENERIC.conv2d_forward(x, w, None, (2, 2), (1, 1), (1, 1))[0], rtol=RTOL)


# (N, C, H, W), (kh, kw)
POOL_CASES = [((2, 3, 8, 8), (2, 2)), ((2, 2, 9, 7), (2, 2)), ((1, 3, 9, 9), (3, 3)), ((2, 2, 6, 9), (2, 3)),
              ((2, 1, 5, 4), (1, 2)), ((1, 2, 4, 4), (4, 4))]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
@pytest.mark.parametrize("ties", [False, True])
def test_tiled_maxpool_matches_generic(case, layout, ties):
    shape, (kh, kw) = case
    x = _rand(shape, 0)
    if ties:  # few distinct values: many ties, which must go to the first offset in row-major order
        x = np.round(x)
    if layout == "channel_major":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    geo = (kh, kw, (kh, kw), (0, 0))
    y, am = FAST.maxpool2d_forward(x, *geo)
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, *geo)
    assert am.dtype == np.int32 and am.shape == am_ref.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = _rand(y.shape, 1)
    dx = FAST.maxpool2d_backward(dy, am, x.shape, *geo)
    np.testing.assert_array_equal(dx, GENERIC.maxpool2d_backward(dy, am_ref, x.shape, *geo))


def test_overlapping_pool_takes_the_generic_path():
    x = _rand((2, 2, 7, 7), 0)
    y, am = FAST.maxpool2d_forward(x, 3, 3, (2, 2), (1, 1))
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, 3, 3, (2, 2), (1, 1))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)


def test_fast_paths_gradcheck_through_layers():
    """A conv-pool-conv stack on the fast paths passes gradcheck in float64 (dx flows through both)."""
    model = Sequential([Conv2D(3, 3, padding=1, activation="relu"), MaxPool2D(2), Conv2D(2, 3, padding=1)])
    assert gradcheck(model, _rand((2, 2, 6, 6), 5))


def test_release_scratch_drops_buffers():
    be = NumpyBackend()
    x, w = _rand((1, 1, 5, 5), 0), _rand((1, 1, 3, 3), 1)
    be.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    assert be._scratch.__dict__
    be.release_scratch()
    assert not be._scratch.__dict__


@pytest.mark.parametrize("case", CONV_CASES[:3], ids=str)
@pytest.mark.parametrize("backend", [FAST, GENERIC], ids=["fast", "generic"])
def test_conv_fused_relu_matches_conv_then_relu(case, backend):
    """relu=True returns max(y, 0) and relu_y masks dy, exactly as a separate ReLU would."""
    xs, (f, kh, kw), pad, dil = case
    x, w, b = _rand(xs, 0), _rand((f, xs[1], kh, kw), 1), _rand((f,), 2)
    geo = ((1, 1), pad, dil)
    y, cache = backend.conv2d_forward(x, w, b, *geo)
    yr, cache_r = backend.conv2d_forward(x, w, b, *geo, relu=True)
    np.testing.assert_array_equal(yr, np.maximum(y, 0))
    assert (yr == 0).any() and (yr > 0).any()  # the mask matters in this case
    dy = _rand(y.shape, 3)
    ref = backend.conv2d_backward(dy * (yr > 0), x.shape, w, cache, *geo)
    got = backend.conv2d_backward(dy, x.shape, w, cache_r, *geo, relu_y=yr)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("keep_bytes", [0, 1 << 30], ids=["rebuild_cols", "keep_cols"])
def test_conv_backward_with_and_without_kept_columns(monkeypatch, keep_bytes):
    from gpunn.backend.cpu import conv as cpu_conv
    monkeypatch.setattr(cpu_conv, "_KEEP_COLS_BYTES", keep_bytes)
    for name in ("DIRECT_MAX_WEIGHTS", "DIRECT_DW_MAX_WEIGHTS", "DIRECT_DX_MAX_WEIGHTS"):
        monkeypatch.setattr(cpu_conv, name, 0)  # the GEMM paths, which use the columns
    xs, (f, kh, kw), pad, dil = CONV_CASES[0]
    x, w, b = _rand(xs, 0), _rand((f, xs[1], kh, kw), 1), _rand((f,), 2)
    geo = ((1, 1), pad, dil)
    y, cache = FAST.conv2d_forward(x, w, b, *geo)
    assert (cache.cols is not None) == bool(keep_bytes)
    y_ref, cols = GENERIC.conv2d_forward(x, w, b, *geo)
    dy = _rand(y.shape, 3)
    for a, r in zip(FAST.conv2d_backward(dy, x.shape, w, cache, *geo), GENERIC.conv2d_backward(dy, x.shape, w, cols, *geo)):
        np.testing.assert_allclose(a, r, rtol=RTOL, atol=ATOL)
