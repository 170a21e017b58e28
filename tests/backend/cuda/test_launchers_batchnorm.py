"""Batch-norm kernels (kernels/batchnorm.cu) against the NumPy backend.

Tolerance: 1e-5 relative to the largest magnitude of each expected array in float32, 1e-12 in
float64 (the block reduction sums in a different order from NumPy).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpunn.backend.cuda import launchers
from tests.kernel_support import (KERNEL_SETTINGS, assert_close, device_backend, kernel_backend,  # noqa: F401
                                  reference, to_device, to_host)


@st.composite
def bn_case(draw):
    n = draw(st.sampled_from([1, 2, 3, 5]))
    c = draw(st.sampled_from([1, 3, 7, 33]))
    spatial = draw(st.sampled_from([(), (5,), (1, 1), (3, 5), (7, 7), (9, 4)]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    momentum = draw(st.sampled_from([0.0, 0.1, 0.9, 1.0]))
    eps = draw(st.sampled_from([1e-5, 1e-3]))
    running = draw(st.booleans())
    offset = draw(st.sampled_from([0.0, 3.0]))  # a mean away from zero tests the two-pass variance
    return (n, c, *spatial), dtype, momentum, eps, running, offset


def _data(shape, dtype, offset, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, rm, rv, dy


def _dx_terms(dy, gamma, invstd):
    """The magnitude of the terms dx is the difference of: gamma * invstd * dy. With one element
    per channel per sample and N = 2, xhat = +-1 and dx cancels to rounding noise of that size
    (seen on an H200: 5.627e-5 vs the reference's 5.623e-5, from terms of about 1)."""
    bshape = (1, -1) + (1,) * (dy.ndim - 2)
    return float(np.max(np.abs(gamma.reshape(bshape) * invstd.reshape(bshape) * dy)))


@KERNEL_SETTINGS
@given(case=bn_case())
def test_batchnorm_train_forward_and_backward_match_numpy(kernel_backend, case):
    shape, dtype, momentum, eps, running, offset = case
    x, gamma, beta, rm, rv, dy = _data(shape, dtype, offset)
    ref = reference()
    rm_ref, rv_ref = (rm.copy(), rv.copy()) if running else (None, None)
    y_ref, mean_ref, inv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, momentum, eps)
    be = kernel_backend
    xd, gd, bd, rmd, rvd = to_device(be, x, gamma, beta, rm if running else None, rv if running else None)
    y, mean, inv = be.batchnorm_forward_train(xd, gd, bd, rmd, rvd, momentum, eps)
    assert_close(to_host(be, y), y_ref, "y")
    assert_close(to_host(be, mean), mean_ref, "mean")
    assert_close(to_host(be, inv), inv_ref, "invstd")
    if running:
        assert_close(to_host(be, rmd), rm_ref, "running_mean")
        assert_close(to_host(be, rvd), rv_ref, "running_var")

    dx_ref, dg_ref, db_ref = ref.batchnorm_backward(dy, x, gamma, mean_ref, inv_ref)
    dx, dg, db = be.batchnorm_backward(be.asarray(dy), xd, gd, mean, inv)
    assert_close(to_host(be, dx), dx_ref, "dx", terms=_dx_terms(dy, gamma, inv_ref))
    assert_close(to_host(be, dg), dg_ref, "dgamma")
    assert_close(to_host(be, db), db_ref, "dbeta")


@KERNEL_SETTINGS
@given(case=bn_case())
def test_batchnorm_infer_matches_numpy(kernel_backend, case):
    shape, dtype, _, eps, _, offset = case
    x, gamma, beta, rm, rv, _ = _data(shape, dtype, offset, seed=1)
    y_ref = reference().batchnorm_forward_infer(x, gamma, beta, rm, rv, eps)
    y = kernel_backend.batchnorm_forward_infer(*to_device(kernel_backend, x, gamma, beta, rm, rv), eps)
    assert_close(to_host(kernel_backend, y), y_ref, "y")


def test_more_channels_than_blocks_and_long_channels(device_backend, monkeypatch):
    """C > grid: the channel loop strides; m >> 256: every thread sums many elements."""
    monkeypatch.setattr(launchers, "MAX_GRID", 2)
    x, gamma, beta, rm, rv, dy = _data((4, 5, 16, 20), np.float32, 1.0, seed=2)
    ref = reference()
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, mean_ref, inv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, 0.1, 1e-5)
    be = device_backend
    xd, gd, bd, rmd, rvd = to_device(be, x, gamma, beta, rm, rv)
    y, mean, inv = be.batchnorm_forward_train(xd, gd, bd, rmd, rvd, 0.1, 1e-5)
    for name, got, want in (("y", y, y_ref), ("mean", mean, mean_ref), ("invstd", inv, inv_ref),
                            ("running_mean", rmd, rm_ref), ("running_var", rvd, rv_ref)):
        assert_close(to_host(be, got), want, name)
    got = be.batchnorm_backward(be.asarray(dy), xd, gd, mean, inv)
    for name, g, r in zip(("dx", "dgamma", "dbeta"), got, ref.batchnorm_backward(dy, x, gamma, mean_ref, inv_ref)):
        assert_close(to_host(be, g), r, name)
    y2 = be.batchnorm_forward_infer(xd, gd, bd, rmd, rvd, 1e-5)
    assert_close(to_host(be, y2), ref.batchnorm_forward_infer(x, gamma, beta, rm_ref, rv_ref, 1e-5), "infer")


@pytest.mark.parametrize("shape, min_part, target_blocks, max_grid", [
    ((3, 1, 3), 1, 4, 65535),         # m = 9 in 4 parts of 3: the last part is empty
    ((5, 3, 7, 11), 40, 10 ** 6, 3),  # 10 parts of 39 (the last 34), both grid loops stride
])
def test_channels_split_into_parts_match_numpy(device_backend, monkeypatch, shape, min_part, target_blocks,
                                               max_grid):
    """Several blocks per channel, merged with Chan's formula (statistics) or in order (gradients)."""
    monkeypatch.setattr(launchers, "BN_MIN_PART", min_part)
    monkeypatch.setattr(launchers, "BN_TARGET_BLOCKS", target_blocks)
    monkeypatch.setattr(launchers, "MAX_GRID", max_grid)
    assert launchers.bn_parts(shape[1], shape[0] * int(np.prod(shape[2:]))) > 1
    x, gamma, beta, rm, rv, dy = _data(shape, np.float64, 3.0, seed=4)
    ref = reference()
    rm_ref, rv_ref = rm.copy(), rv.copy()
    want = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, 0.1, 1e-5)
    be = device_backend
    xd, gd, bd, rmd, rvd = to_device(be, x, gamma, beta, rm, rv)
    got = be.batchnorm_forward_train(xd, gd, bd, rmd, rvd, 0.1, 1e-5)
    for name, g, w in zip(("y", "mean", "invstd"), got, want):
        assert_close(to_host(be, g), w, name)
    assert_close(to_host(be, rmd), rm_ref, "running_mean")
    assert_close(to_host(be, rvd), rv_ref, "running_var")
    grads = be.batchnorm_backward(be.asarray(dy), xd, gd, got[1], got[2])
    for name, g, w in zip(("dx", "dgamma", "dbeta"), grads, ref.batchnorm_backward(dy, x, gamma, want[1], want[2])):
        assert_close(to_host(be, g), w, name, terms=_dx_terms(dy, gamma, want[2]) if name == "dx" else None)


def test_training_forward_is_deterministic(device_backend):
    x, gamma, beta, rm, rv, _ = _data((3, 4, 9, 9), np.float32, 2.0, seed=3)
    be = device_backend
    runs = [to_host(be, be.batchnorm_forward_train(*to_device(be, x, gamma, beta), None, None, 0.1, 1e-5))
            for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_launcher_rejects_bad_inputs(device_backend):
    be, xp = device_backend, device_backend.xp
    x, gamma, beta, rm, rv, dy = (be.asarray(a) for a in _data((2, 3, 4, 4), np.float32, 0.0))
    k = be.kernels
    with pytest.raises(TypeError, match="'gamma' must have dtype float32"):
        launchers.batchnorm_forward_train(k, xp, x, gamma.astype(np.float64), beta, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'beta' must have shape \\(3,\\)"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta[:2].copy(), rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'running_mean' must be C-contiguous"):
        wide = be.asarray(np.zeros(6, np.float32))
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, wide[::2], rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="both be arrays or both None"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, rm, None, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'x' must have at least 2 dimensions"):
        launchers.batchnorm_forward_train(k, xp, x[0, 0, 0], gamma, beta, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'x' must be non-empty"):
        launchers.batchnorm_forward_train(k, xp, x[:0], gamma, beta, rm, rv, 0.1, 1e-5)
    with pytest.raises(ValueError, match="'momentum'"):
        launchers.batchnorm_forward_train(k, xp, x, gamma, beta, rm, rv, 1.5, 1e-5)
    with pytest.raises(ValueError, match="'eps'"):
        launchers.batchnorm_forward_infer(k, xp, x, gamma, beta, rm, rv, 0.0)
    with pytest.raises(ValueError, match="'dy' must have shape"):
        launchers.batchnorm_backward(k, xp, dy[:1].copy(), x, gamma, rm, rv)
    with pytest.raises(TypeError, match="'invstd' must have dtype float32"):
        launchers.batchnorm_backward(k, xp, dy, x, gamma, rm, rv.astype(np.float64))


def test_read_only_running_stats_are_refused_on_numpy_arrays():
    from tests.kernel_support import get_kernel_backend
    be = get_kernel_backend("emulated")
    x, gamma, beta, rm, rv, _ = _data((2, 3), np.float32, 0.0)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="'running_mean' is updated in place and must be writable"):
        launchers.batchnorm_forward_train(be.kernels, np, x, gamma, beta, rm, rv, 0.1, 1e-5)


def test_channels_too_long_for_32_bit_indexing_are_refused():
    """The kernels index within a channel in 32 bits: N*S past int32 gets an error naming it (no
    memory is needed to reach the check: it runs on the shape)."""
    with pytest.raises(ValueError, match=r"batchnorm_backward: 'N\*S \(elements per channel\)' = 4294967296"):
        launchers._bn_plan("batchnorm_backward", 1 << 16, 3, 1 << 16)
