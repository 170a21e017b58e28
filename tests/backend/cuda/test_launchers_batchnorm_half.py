"""The float16 / bfloat16 batch-norm kernels (kernels/batchnorm.cu, GPUNN_HALF sections) for mixed precision.

Under a mixed policy x, dy, gamma and beta are of one 16-bit dtype, the running statistics stay float32;
the kernels (like the generic op, gpunn/backend/ops/norm.py) compute everything in float32 and round
y, dx, dgamma and dbeta once to the 16-bit dtype; mean, invstd and the running statistics are float32.

Tolerances, from the formats' unit roundoff u (half the spacing at 1): fp16 u = 2^-11, bf16 u = 2^-8.
1. Against the float32 kernels on float32 copies of the same 16-bit inputs: the 16-bit kernels run the
   same float expressions in the same reduction order, so their float32 intermediates agree exactly.
   mean, invstd and the running statistics are then bit-equal, and every 16-bit output is the float32
   kernel's output rounded once (round to nearest even): bit-equal to `.astype(dtype)` of it.
2. Against the generic NumPy op: both compute float32 values (v_kernel, v_generic) that differ by at
   most delta = 1e-5 * terms, the float32 kernels' stated tolerance (tests/kernel_support.py: sums
   ordered differently; `terms` the magnitude of the terms the value is formed from), and each rounds
   once, with error at most u |v|. So
       |got - want| <= 2 u |want| + (1 + u) delta + tiny                       (elementwise),
   tiny the format's smallest subnormal (rounding there is absolute). Where the float32 values agree
   (delta = 0) this is one ulp of the 16-bit format: the two roundings may land on neighbouring values,
   and a rounded value's neighbours lie within 2 u |want| of it (the spacing at |want| is at most
   2 u |want|). mean, invstd and the running statistics are float32, held to the float32 tolerance
   (1e-5 relative to the largest magnitude, as in test_launchers_batchnorm.py).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpunn.backend.cuda import launchers
from tests.kernel_support import (KERNEL_SETTINGS, RTOL, Spy, assert_close, device_backend,  # noqa: F401
                                  get_kernel_backend, kernel_backend, reference, to_host)

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
U = {F16: 2.0 ** -11, BF16: 2.0 ** -8}
TINY = {F16: 2.0 ** -24, BF16: 2.0 ** -133}  # the smallest subnormal
SFX = {F16: "f16", BF16: "bf16"}
HALVES = [pytest.param(F16, id="f16"), pytest.param(BF16, id="bf16")]
DELTA = RTOL[F32]  # the float32 kernels' tolerance, relative to the terms' magnitude


def _dev(be, a):
    """`a` (or None) on the backend's device, or a skip where its array module has no such dtype."""
    if a is None:
        return None
    try:
        return be.asarray(np.ascontiguousarray(a).copy())
    except Exception as exc:  # pragma: no cover - only on a backend without the dtype (CuPy, bfloat16)
        pytest.skip(f"{type(be).__name__} cannot hold {a.dtype} arrays: {exc}")


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same_bits(got, want, name):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype, got.shape)
    np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=name)


def assert_half_close(got, want, terms, name):
    """The module docstring's bound 2: |got - want| <= 2 u |want| + (1 + u) delta + tiny."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype, got.shape)
    u = U[want.dtype]
    w = want.astype(np.float64)
    bound = 2 * u * np.abs(w) + (1 + u) * DELTA * float(terms) + TINY[want.dtype]
    err = np.abs(got.astype(np.float64) - w)
    assert np.all(err <= bound), f"{name}: max excess {np.max(err - bound)} (max err {np.max(err)})"


@st.composite
def bn_case(draw):
    n = draw(st.sampled_from([2, 3, 5]))
    c = draw(st.sampled_from([1, 3, 7, 33]))
    spatial = draw(st.sampled_from([(), (5,), (1, 1), (3, 5), (7, 7)]))  # () is the 2-D (N, C) input
    dtype = draw(st.sampled_from([F16, BF16]))
    momentum = draw(st.sampled_from([0.0, 0.1, 1.0]))
    eps = draw(st.sampled_from([1e-5, 1e-3]))
    running = draw(st.booleans())
    offset = draw(st.sampled_from([0.0, 3.0]))  # a mean away from zero tests the two-pass variance
    return (n, c, *spatial), dtype, momentum, eps, running, offset


def _data(shape, dtype, offset, seed=0):
    """16-bit x, gamma, beta, dy (gamma / beta are the 16-bit copies of float32 master weights) and
    float32 running statistics."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, c).astype(np.float32)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, rm, rv, dy


def _bshape(ndim):
    return (1, -1) + (1,) * (ndim - 2)


def _f32(*arrays):
    return [None if a is None else a.astype(np.float32) for a in arrays]


def _y_terms(x, gamma, beta, mean, invstd):
    """Magnitude of the terms y is formed from: |x - mean| * |gamma * invstd| + |beta|."""
    b = _bshape(x.ndim)
    x32, g32, b32 = _f32(x, gamma, beta)
    return float(np.max(np.abs(x32 - mean.reshape(b)) * np.abs(g32 * invstd).reshape(b) + np.abs(b32).reshape(b)))


def _dx_terms(dy, gamma, invstd):
    """gamma * invstd * dy: dx is a difference of terms of that size (see test_launchers_batchnorm.py)."""
    b = _bshape(dy.ndim)
    return float(np.max(np.abs(gamma.astype(np.float32).reshape(b) * invstd.reshape(b) * dy.astype(np.float32))))


def _sum_terms(dy, x, mean, invstd):
    """dbeta = sum(dy), dgamma = sum(dy * xhat): the magnitude of the sums of absolute values."""
    axes = (0, *range(2, dy.ndim))
    b = _bshape(dy.ndim)
    dy32, x32 = _f32(dy, x)
    xhat = (x32 - mean.reshape(b)) * invstd.reshape(b)
    return float(max(np.max(np.abs(dy32).sum(axis=axes)), np.max(np.abs(dy32 * xhat).sum(axis=axes))))


# -- against the generic NumPy op (kernels on and off) ------------------------------------------
@KERNEL_SETTINGS
@given(case=bn_case())
def test_half_train_forward_and_backward_match_numpy(kernel_backend, case):
    shape, dtype, momentum, eps, running, offset = case
    x, gamma, beta, rm, rv, dy = _data(shape, dtype, offset)
    ref = reference()
    rm_ref, rv_ref = (rm.copy(), rv.copy()) if running else (None, None)
    y_ref, mean_ref, inv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, momentum, eps)
    assert y_ref.dtype == dtype and mean_ref.dtype == inv_ref.dtype == F32
    be = kernel_backend
    xd, gd, bd = _dev(be, x), _dev(be, gamma), _dev(be, beta)
    rmd, rvd = (_dev(be, rm), _dev(be, rv)) if running else (None, None)
    y, mean, inv = be.batchnorm_forward_train(xd, gd, bd, rmd, rvd, momentum, eps)
    assert_half_close(to_host(be, y), y_ref, _y_terms(x, gamma, beta, mean_ref, inv_ref), "y")
    assert_close(to_host(be, mean), mean_ref, "mean")
    assert_close(to_host(be, inv), inv_ref, "invstd")
    if running:
        assert_close(to_host(be, rmd), rm_ref, "running_mean")
        assert_close(to_host(be, rvd), rv_ref, "running_var")

    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, mean_ref, inv_ref)
    assert dx_ref.dtype == dg_ref.dtype == db_ref.dtype == dtype
    dx, dg, db = be.batchnorm_backward(_dev(be, dy), xd, gd, mean, inv)
    assert_half_close(to_host(be, dx), dx_ref, _dx_terms(dy, gamma, inv_ref), "dx")
    sums = _sum_terms(dy, x, mean_ref, inv_ref)
    assert_half_close(to_host(be, dg), dg_ref, sums, "dgamma")
    assert_half_close(to_host(be, db), db_ref, sums, "dbeta")


@KERNEL_SETTINGS
@given(case=bn_case())
def test_half_infer_matches_numpy(kernel_backend, case):
    shape, dtype, _, eps, _, offset = case
    x, gamma, beta, rm, rv, _ = _data(shape, dtype, offset, seed=1)
    y_ref = reference().batchnorm_forward_infer(x, gamma, beta, rm, rv, eps)
    be = kernel_backend
    y = be.batchnorm_forward_infer(*(_dev(be, a) for a in (x, gamma, beta, rm, rv)), eps)
    inv = 1.0 / np.sqrt(rv + np.float32(eps))
    assert_half_close(to_host(be, y), y_ref, _y_terms(x, gamma, beta, rm, inv), "y")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 5)], ids=["nchw", "nc"])
def test_half_relu_fused_ops_match_numpy_and_launch_the_half_kernels(device_backend, dtype, shape):
    """batchnorm_relu_* have no kernels of their own: the backend composes them from the batch-norm
    ops (which reach the 16-bit kernels) and relu."""
    x, gamma, beta, rm, rv, dy = _data(shape, dtype, 1.0, seed=5)
    ref = reference()
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, mean_ref, inv_ref = ref.batchnorm_relu_forward_train(x, gamma, beta, rm_ref, rv_ref, 0.1, 1e-5)
    be = device_backend
    xd, gd, bd, rmd, rvd = (_dev(be, a) for a in (x, gamma, beta, rm, rv))
    saved = be.kernels
    be.kernels = spy = Spy(saved)
    try:
        y, mean, inv = be.batchnorm_relu_forward_train(xd, gd, bd, rmd, rvd, 0.1, 1e-5)
        grads = be.batchnorm_relu_backward(_dev(be, dy), y, xd, gd, mean, inv)
    finally:
        be.kernels = saved
    s = SFX[dtype]
    assert spy.names == [f"bn_part_stats_{s}", f"bn_finalize_stats_{s}", f"bn_apply_{s}",
                         f"bn_part_grad_sums_{s}", f"bn_finalize_grad_{s}", f"bn_bwd_apply_{s}"]
    yh = to_host(be, y)
    assert yh.dtype == dtype and np.all(yh.astype(np.float32) >= 0)
    assert_half_close(yh, y_ref, _y_terms(x, gamma, beta, mean_ref, inv_ref), "y")
    assert_close(to_host(be, mean), mean_ref, "mean")
    assert_close(to_host(be, inv), inv_ref, "invstd")
    assert_close(to_host(be, rmd), rm_ref, "running_mean")
    assert_close(to_host(be, rvd), rv_ref, "running_var")
    # the reference masks dy by its own y > 0: compare where both y agree on the mask
    mask = (yh.astype(np.float32) > 0) == (y_ref.astype(np.float32) > 0)
    assert mask.mean() > 0.99
    want = ref.batchnorm_relu_backward(dy * mask.astype(dtype), y_ref, x, gamma, mean_ref, inv_ref)
    got = be.batchnorm_relu_backward(_dev(be, dy * mask.astype(dtype)), y, xd, gd, mean, inv)
    masked_dy = np.where(y_ref.astype(np.float32) > 0, dy.astype(np.float32), 0).astype(dtype)
    sums = _sum_terms(masked_dy, x, mean_ref, inv_ref)
    for name, g, w, t in zip(("dx", "dgamma", "dbeta"), got, want,
                             (_dx_terms(dy, gamma, inv_ref), sums, sums)):
        assert_half_close(to_host(be, g), w, t, name)
    assert all(to_host(be, g).dtype == dtype for g in grads)


# -- against the float32 kernels: same float math, rounded once --------------------------------
def _f32_run(be, x, gamma, beta, rm, rv, dy, momentum, eps):
    """The float32 kernels on float32 copies: (y, mean, invstd, rm, rv, dx, dgamma, dbeta, y_infer)."""
    x32, g32, b32, dy32 = _f32(x, gamma, beta, dy)
    rmd, rvd = _dev(be, rm), _dev(be, rv)
    xd, gd = _dev(be, x32), _dev(be, g32)
    y, mean, inv = be.batchnorm_forward_train(xd, gd, _dev(be, b32), rmd, rvd, momentum, eps)
    dx, dg, db = be.batchnorm_backward(_dev(be, dy32), xd, gd, mean, inv)
    yi = be.batchnorm_forward_infer(xd, gd, _dev(be, b32), rmd, rvd, eps)
    return [to_host(be, a) for a in (y, mean, inv, rmd, rvd, dx, dg, db, yi)]


def _half_run(be, x, gamma, beta, rm, rv, dy, momentum, eps):
    rmd, rvd = _dev(be, rm), _dev(be, rv)
    xd, gd = _dev(be, x), _dev(be, gamma)
    y, mean, inv = be.batchnorm_forward_train(xd, gd, _dev(be, beta), rmd, rvd, momentum, eps)
    dx, dg, db = be.batchnorm_backward(_dev(be, dy), xd, gd, mean, inv)
    yi = be.batchnorm_forward_infer(xd, gd, _dev(be, beta), rmd, rvd, eps)
    return [to_host(be, a) for a in (y, mean, inv, rmd, rvd, dx, dg, db, yi)]


_NAMES = ("y", "mean", "invstd", "running_mean", "running_var", "dx", "dgamma", "dbeta", "y_infer")


def _assert_rounded_f32(half, f32, dtype):
    """The module docstring's check 1: float32 results bit-equal, 16-bit ones the float32 rounded once."""
    for name, h, f in zip(_NAMES, half, f32):
        want = f if name in ("mean", "invstd", "running_mean", "running_var") else f.astype(dtype)
        assert_same_bits(h, want, name)


@KERNEL_SETTINGS
@given(case=bn_case())
def test_half_kernels_are_the_float32_kernels_rounded_once(device_backend, case):
    shape, dtype, momentum, eps, _, offset = case
    args = (*_data(shape, dtype, offset, seed=2), momentum, eps)
    _assert_rounded_f32(_half_run(device_backend, *args), _f32_run(device_backend, *args), dtype)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape, min_part, target_blocks, max_grid", [
    ((3, 1, 3), 1, 4, 65535),         # m = 9 in 4 parts of 3: the last part is empty
    ((5, 3, 7, 11), 40, 10 ** 6, 3),  # 10 parts of 39 (the last 34), both grid loops stride
    ((9, 4), 2, 10 ** 6, 2),          # 2-D input, several parts, strided grids
])
def test_half_channels_split_into_parts(device_backend, monkeypatch, dtype, shape, min_part, target_blocks,
                                        max_grid):
    """Several blocks per channel (Chan's merge, gradient parts in order), grids that stride: still the
    float32 kernels rounded once, and within the bound of the generic op."""
    monkeypatch.setattr(launchers, "BN_MIN_PART", min_part)
    monkeypatch.setattr(launchers, "BN_TARGET_BLOCKS", target_blocks)
    monkeypatch.setattr(launchers, "MAX_GRID", max_grid)
    assert launchers.bn_parts(shape[1], shape[0] * int(np.prod(shape[2:]))) > 1
    data = _data(shape, dtype, 3.0, seed=4)
    half = _half_run(device_backend, *data, 0.1, 1e-5)
    _assert_rounded_f32(half, _f32_run(device_backend, *data, 0.1, 1e-5), dtype)
    x, gamma, beta, rm, rv, dy = data
    ref = reference()
    y_ref, mean_ref, inv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), 0.1, 1e-5)
    assert_half_close(half[0], y_ref, _y_terms(x, gamma, beta, mean_ref, inv_ref), "y")
    dx_ref = ref.batchnorm_backward(dy, x, gamma, mean_ref, inv_ref)[0]
    assert_half_close(half[5], dx_ref, _dx_terms(dy, gamma, inv_ref), "dx")


@pytest.mark.parametrize("dtype", HALVES)
def test_half_training_forward_is_deterministic(device_backend, dtype):
    x, gamma, beta, _, _, dy = _data((3, 4, 9, 9), dtype, 2.0, seed=3)
    be = device_backend
    runs = []
    for _ in range(2):
        xd, gd = _dev(be, x), _dev(be, gamma)
        y, mean, inv = be.batchnorm_forward_train(xd, gd, _dev(be, beta), None, None, 0.1, 1e-5)
        runs.append([to_host(be, a) for a in (y, mean, inv, *be.batchnorm_backward(_dev(be, dy), xd, gd, mean, inv))])
    for a, b in zip(*runs):
        assert_same_bits(a, b, "rerun")


# -- routing ------------------------------------------------------------------------------------
def _spied(be, fn):
    saved = be.kernels
    be.kernels = spy = Spy(saved)
    try:
        out = fn()
    finally:
        be.kernels = saved
    return out, spy.names


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (5, 3)], ids=["nchw", "nc"])
def test_half_ops_launch_the_half_kernels(dtype, shape):
    be = get_kernel_backend("emulated")
    x, gamma, beta, rm, rv, dy = _data(shape, dtype, 0.0)
    s = SFX[dtype]
    (y, mean, inv), names = _spied(be, lambda: be.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5))
    assert names == [f"bn_part_stats_{s}", f"bn_finalize_stats_{s}", f"bn_apply_{s}"]
    assert y.dtype == dtype and mean.dtype == inv.dtype == F32
    _, names = _spied(be, lambda: be.batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5))
    assert names == [f"bn_part_stats_{s}", f"bn_finalize_stats_{s}", f"bn_apply_{s}"]
    yi, names = _spied(be, lambda: be.batchnorm_forward_infer(x, gamma, beta, rm, rv, 1e-5))
    assert names == [f"bn_fwd_infer_{s}"] and yi.dtype == dtype
    grads, names = _spied(be, lambda: be.batchnorm_backward(dy, x, gamma, mean, inv))
    assert names == [f"bn_part_grad_sums_{s}", f"bn_finalize_grad_{s}", f"bn_bwd_apply_{s}"]
    assert all(g.dtype == dtype for g in grads)
    # the 16-bit module alone serves them (no float32 module compiled for a 16-bit batch norm)
    assert "batchnorm:half" in be.kernels._modules


@pytest.mark.parametrize("dtype", HALVES)
def test_use_kernels_off_takes_the_generic_path(dtype):
    x, gamma, beta, rm, rv, dy = _data((2, 3, 4, 4), dtype, 1.0, seed=6)
    ref = reference()
    rm_ref, rv_ref = rm.copy(), rv.copy()
    want = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, 0.1, 1e-5)
    for use in (False, {"batchnorm_forward_infer", "batchnorm_backward", "im2col"}):
        be = get_kernel_backend("emulated", False) if use is False else get_kernel_backend("emulated", True)
        saved_ops = be.use_kernels
        be.use_kernels = use
        try:
            rmd, rvd = rm.copy(), rv.copy()
            got, names = _spied(be, lambda: be.batchnorm_forward_train(x, gamma, beta, rmd, rvd, 0.1, 1e-5))
        finally:
            be.use_kernels = saved_ops
        assert names == []
        for name, g, w in zip(("y", "mean", "invstd"), got, want):
            assert_same_bits(g, w, name)  # the generic op is the reference
        assert_same_bits(rmd, rm_ref, "running_mean")
        assert_same_bits(rvd, rv_ref, "running_var")
    be = get_kernel_backend("emulated", False)
    _, names = _spied(be, lambda: (be.batchnorm_forward_infer(x, gamma, beta, rm, rv, 1e-5),
                                   be.batchnorm_backward(dy, x, gamma, want[1], want[2])))
    assert names == []


@pytest.mark.parametrize("dtype", HALVES)
def test_mixed_or_wrong_dtypes_take_the_generic_path(dtype):
    """As on the float path, a mix the kernels do not take runs the generic op (which promotes):
    gamma / beta of another dtype than x, 16-bit or float64 running statistics, 16-bit saved
    statistics, dy of another dtype."""
    be = get_kernel_backend("emulated")
    ref = reference()
    x, gamma, beta, rm, rv, dy = _data((2, 3, 4), dtype, 0.0, seed=7)
    other = BF16 if dtype == F16 else F16
    cases = [
        (gamma.astype(np.float32), beta.astype(np.float32), rm, rv),    # float32 master weights
        (gamma.astype(other), beta, rm, rv),                            # two 16-bit dtypes
        (gamma, beta, rm.astype(dtype), rv.astype(dtype)),              # 16-bit running statistics
        (gamma, beta, rm.astype(np.float64), rv.astype(np.float64)),   # float64 running statistics
        (gamma, beta, rm, rv.astype(np.float64)),                       # one of them
    ]
    for g, b, m, v in cases:
        m_ref, v_ref, m_got, v_got = m.copy(), v.copy(), m.copy(), v.copy()
        want = ref.batchnorm_forward_train(x, g, b, m_ref, v_ref, 0.1, 1e-5)
        got, names = _spied(be, lambda: be.batchnorm_forward_train(x, g, b, m_got, v_got, 0.1, 1e-5))
        assert names == [], (g.dtype, b.dtype, m.dtype, v.dtype)
        for name, gg, ww in zip(("y", "mean", "invstd", "rm", "rv"), (*got, m_got, v_got), (*want, m_ref, v_ref)):
            assert_same_bits(gg, ww, name)
        _, names = _spied(be, lambda: be.batchnorm_forward_infer(x, g, b, m, v, 1e-5))
        assert names == []
    mean, inv = ref.batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5)[1:]
    for d, xx, g, mm, ii in [(dy.astype(other), x, gamma, mean, inv), (dy, x, gamma.astype(np.float32), mean, inv),
                             (dy, x, gamma, mean.astype(dtype), inv.astype(dtype))]:
        want = ref.batchnorm_backward(d, xx, g, mm, ii)
        got, names = _spied(be, lambda: be.batchnorm_backward(d, xx, g, mm, ii))
        assert names == []
        for name, gg, ww in zip(("dx", "dgamma", "dbeta"), got, want):
            assert_same_bits(gg, ww, name)


def test_half_launchers_reject_bad_inputs(device_backend):
    be, xp, k = device_backend, device_backend.xp, device_backend.kernels
    x, gamma, beta, rm, rv, dy = (_dev(be, a) for a in _data((2, 3, 4, 4), F16, 0.0))
    with pytest.raises(TypeError, match="batchnorm_forward_train: argument 'running_mean' must have dtype float32, "
                                        "got float16"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, rm.astype(np.float16), rv, 0.1, 1e-5)
    with pytest.raises(TypeError, match="argument 'running_var' must have dtype float32, got float64"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, rm, rv.astype(np.float64), 0.1, 1e-5)
    with pytest.raises(TypeError, match="batchnorm_forward_train: argument 'gamma' must have dtype float16, "
                                        "got float32"):
        launchers.batchnorm_forward_train(k, xp, x, gamma.astype(np.float32), beta, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'beta' must have shape \\(3,\\)"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta[:2].copy(), rm, rv, 0.1, 1e-5)
    with pytest.raises(TypeError, match="batchnorm_forward_infer: argument 'running_mean' must have dtype float32"):
        launchers.batchnorm_forward_infer(k, xp, x, gamma, beta, rm.astype(np.float16), rv, 1e-5)
    with pytest.raises(TypeError, match="batchnorm_forward_infer: argument 'beta' must have dtype float16"):
        launchers.batchnorm_forward_infer(k, xp, x, gamma, beta.astype(np.float32), rm, rv, 1e-5)
    with pytest.raises(TypeError, match="batchnorm_backward: argument 'mean' must have dtype float32, got float16"):
        launchers.batchnorm_backward(k, xp, dy, x, gamma, rm.astype(np.float16), rv)
    with pytest.raises(TypeError, match="batchnorm_backward: argument 'dy' must have dtype float16"):
        launchers.batchnorm_backward(k, xp, dy.astype(np.float32), x, gamma, rm, rv)
    with pytest.raises(TypeError, match="batchnorm_backward: argument 'gamma' must have dtype float16"):
        launchers.batchnorm_backward(k, xp, dy, x, gamma.astype(np.float32), rm, rv)
    with pytest.raises(TypeError, match="batchnorm_forward_train: argument 'x' must be float32 or float64 "
                                        "\\(or float16 / bfloat16\\)"):
        launchers.batchnorm_forward_train(k, xp, x.astype(np.int16), gamma, beta, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'running_mean' must be C-contiguous"):
        wide = _dev(be, np.zeros(6, np.float32))
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, wide[::2], rv, 0.1, 1e-5)


def test_backend_keeps_the_launcher_errors_for_a_strided_running_stat():
    """Through the backend (kernel path), a non-contiguous float32 running statistic is refused by
    the launcher, naming it, as on the float path (it is updated in place, so no copy is taken)."""
    be = get_kernel_backend("emulated")
    x, gamma, beta, rm, rv, _ = _data((2, 3, 4), F16, 0.0)
    wide = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="batchnorm_forward_train: argument 'running_mean' must be C-contiguous"):
        be.batchnorm_forward_train(x, gamma, beta, wide[::2], rv, 0.1, 1e-5)
