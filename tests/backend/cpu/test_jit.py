"""The numba CPU kernels (gpunn/backend/cpu/jit.py) as the NumPy backend uses them: tiled
max-pool and batch norm agree with the generic ops (float64, tight tolerance; pool exactly), in
both memory layouts the backend produces; without numba the NumPy paths give the same results.
Also: Sequential.backward(need_input_grad=False) skips a first conv's dx and nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend.cpu import jit as cpu_jit
from gpunn.backend.cpu import conv as cpu_conv
from gpunn.backend.cpu.backend import NumpyBackend
from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.testing import gradcheck

FAST, GENERIC = NumpyBackend(), NumpyBackend(fast_paths=False)
TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture
def numba():
    return pytest.importorskip("numba")


@pytest.fixture
def no_numba(monkeypatch):
    """The backend as it runs where numba is not installed."""
    monkeypatch.setattr(cpu_jit, "numba_available", lambda: False)


def _rand(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _layout(x, layout):
    if layout == "channel_major":  # the fast conv's output: (C, N, H, W) memory seen as NCHW
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    if layout == "strided":  # a padded buffer's interior, as conv2d_backward returns dx
        buf = np.zeros((x.shape[1], x.shape[0], x.shape[2] + 2, x.shape[3] + 2), dtype=x.dtype)
        buf[:, :, 1:-1, 1:-1] = x.transpose(1, 0, 2, 3)
        return buf[:, :, 1:-1, 1:-1].transpose(1, 0, 2, 3)
    return x


# -- direct convolution (small weights) -----------------------------------------------------------
# (N, C, H, W), (F, kh, kw), padding, dilation: C < F, C == F, C > F, dilation, a 1x1 output
CONVS = [((2, 1, 9, 9), (3, 5, 5), (2, 2), (1, 1)), ((2, 3, 7, 6), (3, 3, 3), (1, 1), (1, 1)),
         ((3, 4, 8, 7), (2, 2, 3), (0, 1), (1, 1)), ((2, 2, 9, 10), (5, 3, 3), (2, 1), (2, 2)),
         ((2, 2, 5, 5), (3, 5, 5), (0, 0), (1, 1))]


def _conv_both(x, weight, bias, padding, dilation):
    out = []
    for be in (FAST, GENERIC):
        y, cache = be.conv2d_forward(x, weight, bias, (1, 1), padding, dilation)
        dy = _rand(y.shape, 7, x.dtype)
        out.append((y, *be.conv2d_backward(dy, x.shape, weight, cache, (1, 1), padding, dilation)))
    return out


@pytest.mark.parametrize("case", CONVS, ids=str)
@pytest.mark.parametrize("path", ["direct", "gemm"])
def test_conv_direct_and_gemm_paths_match_generic(numba, monkeypatch, case, path):
    shape, (f, kh, kw), padding, dilation = case
    limit = 1 << 30 if path == "direct" else 0
    monkeypatch.setattr(cpu_conv, "DIRECT_MAX_WEIGHTS", limit)
    monkeypatch.setattr(cpu_conv, "DIRECT_DX_MAX_WEIGHTS", limit)
    monkeypatch.setattr(cpu_conv, "DIRECT_DW_MAX_WEIGHTS", limit)
    calls = []
    for name in ("frame_corr", "frame_dw"):
        real = getattr(cpu_jit, name)
        monkeypatch.setattr(cpu_jit, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x = _rand(shape, 0)
    fast, ref = _conv_both(x, _rand((f, shape[1], kh, kw), 1), _rand((f,), 2), padding, dilation)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **TOL)
    expected = {"frame_corr", "frame_dw"} if path == "direct" else set()
    assert set(calls) == expected
    # dX by correlation only when C < F (the scatter-add it replaces); forward always
    assert calls.count("frame_corr") == (2 if shape[1] < f else 1) or path == "gemm"


def test_conv_direct_float32(numba):
    x, w = _rand((4, 1, 12, 12), 0, np.float32), _rand((4, 1, 5, 5), 1, np.float32)
    fast, ref = _conv_both(x, w, np.zeros(4, np.float32), (2, 2), (1, 1))
    for a, b in zip(fast, ref):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels,filters", [(1, 3), (4, 2)])  # C < F and C > F
def test_conv_without_numba_matches_generic(no_numba, channels, filters):
    x = _rand((2, channels, 7, 7), 0)
    fast, ref = _conv_both(x, _rand((filters, channels, 3, 3), 1), None, (1, 1), (1, 1))
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a, b, **TOL)


def test_lenet_like_stack_gradchecks_on_the_direct_kernels():
    model = Sequential([Conv2D(3, 3, padding=1, activation="relu"), MaxPool2D(2), Conv2D(4, 3, padding=1),
                        Flatten(), Dense(2)])
    assert gradcheck(model, _rand((2, 2, 4, 4), 5))


# -- max-pool -------------------------------------------------------------------------------------
POOLS = [((2, 3, 8, 8), (2, 2)), ((2, 2, 9, 7), (2, 2)), ((1, 3, 9, 9), (3, 3)), ((2, 2, 6, 9), (2, 3)),
         ((2, 2, 3, 5), (3, 2)), ((1, 2, 7, 8), (1, 4))]  # the last two: output sizes h//2, w//2 (not 2x2)


@pytest.mark.parametrize("case", POOLS, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channel_major", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jit_maxpool_matches_generic(numba, case, layout, dtype):
    shape, (kh, kw) = case
    x = _layout(np.round(_rand(shape, 0, dtype)), layout)  # rounded: many ties, first offset wins
    geo = (kh, kw, (kh, kw), (0, 0))
    y, am = FAST.maxpool2d_forward(x, *geo)
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, *geo)
    assert y.dtype == dtype and am.dtype == np.int32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = _layout(_rand(y.shape, 1, dtype), layout if layout != "strided" else "nchw")
    dx = FAST.maxpool2d_backward(dy, am, x.shape, *geo)
    np.testing.assert_array_equal(dx, GENERIC.maxpool2d_backward(dy, am_ref, x.shape, *geo))


def test_jit_maxpool_nan_follows_the_generic_rule(numba):
    """A NaN at a window's first offset stays (nothing compares greater); a later NaN never wins."""
    x = _rand((1, 1, 4, 4), 0)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.nan
    geo = (2, 2, (2, 2), (0, 0))
    y, am = FAST.maxpool2d_forward(x, *geo)
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, *geo)
    np.testing.assert_array_equal(y, y_ref)  # equal_nan by default for assert_array_equal
    np.testing.assert_array_equal(am, am_ref)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


def test_jit_maxpool_kernel_is_used(numba, monkeypatch):
    calls = []
    real = cpu_jit.maxpool_tiled_forward
    monkeypatch.setattr(cpu_jit, "maxpool_tiled_forward", lambda *a: calls.append(1) or real(*a))
    FAST.maxpool2d_forward(_rand((1, 1, 4, 4), 0), 2, 2, (2, 2), (0, 0))
    assert calls


@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
def test_maxpool_without_numba_matches_generic(no_numba, layout):
    x = _layout(np.round(_rand((2, 3, 9, 8), 0)), layout)
    geo = (2, 2, (2, 2), (0, 0))
    y, am = FAST.maxpool2d_forward(x, *geo)
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, *geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = _rand(y.shape, 1)
    np.testing.assert_array_equal(FAST.maxpool2d_backward(dy, am, x.shape, *geo),
                                  GENERIC.maxpool2d_backward(dy, am_ref, x.shape, *geo))


# -- batch norm -----------------------------------------------------------------------------------
def _bn_both(x, dy, seed=3):
    c = x.shape[1]
    gamma, beta = _rand((c,), seed, x.dtype), _rand((c,), seed + 1, x.dtype)
    out = []
    for be in (FAST, GENERIC):
        rm, rv = np.zeros(c, x.dtype), np.ones(c, x.dtype)
        y, mean, invstd = be.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
        dx, dg, db = be.batchnorm_backward(dy, x, gamma, mean, invstd)
        out.append((y, mean, invstd, rm, rv, dx, dg, db))
    return out


@pytest.mark.parametrize("layout", ["nchw", "channel_major", "strided"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 1, 3), (7, 1, 2, 2)], ids=str)
def test_jit_batchnorm_matches_generic_float64(numba, layout, shape):
    x = _layout(_rand(shape, 0) * 3 + 5, layout)  # a large mean: the two-pass variance matters
    dy = _layout(_rand(shape, 1), "channel_major" if layout == "nchw" else "nchw")
    fast, ref = _bn_both(x, dy)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **TOL)


def test_jit_batchnorm_float32_stays_float32(numba):
    x, dy = _rand((8, 4, 6, 6), 0, np.float32), _rand((8, 4, 6, 6), 1, np.float32)
    fast, ref = _bn_both(x, dy)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_batchnorm_without_numba_matches_generic(no_numba):
    x, dy = _rand((3, 2, 4, 4), 0), _rand((3, 2, 4, 4), 1)
    fast, ref = _bn_both(x, dy)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a, b)


def test_jit_batchnorm_bad_input_still_reports(numba):
    x = _rand((2, 3, 4, 4), 0)
    with pytest.raises((ValueError, IndexError)):
        FAST.batchnorm_backward(_rand((2, 3, 4, 5), 1), x, np.ones(3), np.zeros(3), np.ones(3))


def test_cifar_style_block_gradchecks_on_the_jit_paths():
    model = Sequential([Conv2D(3, 3, padding=1), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dense(2)])
    assert gradcheck(model, _rand((3, 2, 4, 4), 5))


# -- the first layer's input gradient --------------------------------------------------------------
def _lenet_like():
    model = Sequential([Conv2D(2, 3, padding=1, activation="relu"), MaxPool2D(2), Flatten(), Dense(3)])
    model.forward(_rand((2, 1, 4, 4), 0), training=True)
    return model


def test_backward_can_skip_the_first_layers_input_gradient():
    model = _lenet_like()
    x, dy = _rand((2, 1, 4, 4), 0), _rand((2, 3), 1)
    model.zero_grad()
    model.forward(x, training=True)
    dx = model.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.forward(x, training=True)
    assert model.backward(dy, need_input_grad=False) is None
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert model.layers[0].needs_input_grad is True  # restored
    assert dx.shape == x.shape


def test_backward_keeps_a_first_layer_that_turned_it_off_itself():
    model = _lenet_like()
    model.layers[0].needs_input_grad = False
    model.forward(_rand((2, 1, 4, 4), 0), training=True)
    assert model.backward(_rand((2, 3), 1)) is None
    assert model.layers[0].needs_input_grad is False


def test_fit_skips_the_first_conv_input_gradient(monkeypatch):
    model = _lenet_like()
    seen = []
    real = model.layers[0].backend.conv2d_backward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("need_dx"))
        return real(*args, **kwargs)
    monkeypatch.setattr(model.layers[0].backend, "conv2d_backward", spy)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(_rand((4, 1, 4, 4), 2), np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert seen == [False]
    assert model.layers[0].needs_input_grad is True


# -- batch norm fused with the ReLU after it ------------------------------------------------------
@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
@pytest.mark.parametrize("jit", [True, False], ids=["numba", "no_numba"])
def test_batchnorm_relu_fused_ops_match_the_composition(layout, jit, monkeypatch):
    if jit:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(cpu_jit, "numba_available", lambda: False)
    x = _layout(_rand((4, 3, 5, 6), 0), layout)
    g, b = _rand((3,), 1), _rand((3,), 2)
    stats = [(np.zeros(3), np.ones(3)) for _ in range(2)]
    y, mean, invstd = FAST.batchnorm_relu_forward_train(x, g, b, *stats[0], 0.1, 1e-5)
    y_ref, mean_ref, invstd_ref = GENERIC.batchnorm_forward_train(x, g, b, *stats[1], 0.1, 1e-5)
    y_ref = np.maximum(y_ref, 0)
    for a, r in ((y, y_ref), (mean, mean_ref), (invstd, invstd_ref), (stats[0][1], stats[1][1])):
        np.testing.assert_allclose(a, r, **TOL)
    assert (y == 0).any() and (y > 0).any()
    dy = _rand(x.shape, 3)
    got = FAST.batchnorm_relu_backward(dy, y, x, g, mean, invstd)
    ref = GENERIC.batchnorm_backward(dy * (y_ref > 0), x, g, mean_ref, invstd_ref)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, **TOL)


def test_sequential_fuses_batchnorm_relu_and_gradchecks():
    model = Sequential([Conv2D(3, 3, padding=1), BatchNorm(), ReLU(), Flatten(), Dense(2)])
    x = _rand((3, 2, 4, 4), 4)
    model.forward(x, training=True)  # builds every layer (fusion starts once they are built)
    fused = model.forward(x, training=True)
    assert model._absorbed == {2}
    h = x  # the same layers one by one, unfused
    for layer in model.layers:
        h = layer.forward(h, training=True)
    np.testing.assert_allclose(fused, h, **TOL)
    assert gradcheck(model, x)  # training mode: batch statistics, ReLU mask inside BatchNorm.backward


@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
def test_relu_runs_the_numba_kernels_in_either_layout(numba, monkeypatch, layout):
    calls = []
    for name in ("relu_forward", "relu_backward"):
        real = getattr(cpu_jit, name)
        monkeypatch.setattr(cpu_jit, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    x = _layout(_rand((3, 4, 5, 5), 0), layout)
    y = FAST.relu_forward(x)
    dy = _layout(_rand(x.shape, 1), layout)
    dx = FAST.relu_backward(dy, y)
    assert calls == ["relu_forward", "relu_backward"]
    assert y.strides == x.strides and dx.strides == dy.strides  # the layout is kept
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(dx, dy * (x > 0))
