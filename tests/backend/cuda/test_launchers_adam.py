"""Fused Adam/AdamW kernel (kernels/adam.cu) against the NumPy backend's adam_step.

Tolerance: 1e-5 relative in float32 (the reference evaluates the update in an algebraically
equal but differently rounded form), 1e-12 in float64.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpunn.backend.cuda import launchers
from tests.kernel_support import (KERNEL_SETTINGS, assert_close, device_backend, kernel_backend,  # noqa: F401
                                  reference, to_device, to_host)


def _buffers(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    m = (rng.standard_normal(n) * 0.1).astype(dtype)
    v = (rng.uniform(0.0, 0.5, n)).astype(dtype)
    return param, grad, m, v


@st.composite
def adam_case(draw):
    n = draw(st.sampled_from([1, 7, 255, 256, 257, 1000, 3001]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    hyper = dict(lr=draw(st.sampled_from([1e-3, 0.1])), beta1=draw(st.sampled_from([0.0, 0.9])),
                 beta2=draw(st.sampled_from([0.99, 0.999])), eps=draw(st.sampled_from([1e-8, 1e-3])),
                 weight_decay=draw(st.sampled_from([0.0, 0.01, 0.5])), step=draw(st.integers(1, 20)),
                 decoupled=draw(st.booleans()))
    zero_grad = draw(st.booleans())
    return n, dtype, hyper, zero_grad


def _run(backend, bufs, hyper, zero_grad, max_v=None):
    arrays = to_device(backend, *bufs, max_v)
    backend.adam_step(*arrays[:4], **hyper, zero_grad=zero_grad, max_v=arrays[4])
    return [to_host(backend, a) for a in arrays]


@KERNEL_SETTINGS
@given(case=adam_case())
def test_adam_step_matches_numpy(kernel_backend, case):
    n, dtype, hyper, zero_grad = case
    bufs = _buffers(n, dtype)
    expected = _run(reference(), bufs, hyper, zero_grad)
    got = _run(kernel_backend, bufs, hyper, zero_grad)
    for name, g, e in zip(("param", "grad", "m", "v"), got, expected):
        assert_close(g, e, name)
    if zero_grad:
        assert not np.any(got[1])
    else:
        np.testing.assert_array_equal(got[1], bufs[1])  # coupled decay must not touch grad


def test_three_steps_in_a_row_stay_together(device_backend):
    bufs = _buffers(4099, np.float32, seed=1)
    ref_arrays = [a.copy() for a in bufs]
    dev_arrays = to_device(device_backend, *bufs)
    for step in (1, 2, 3):
        hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, step=step, decoupled=True)
        reference().adam_step(*ref_arrays, **hyper)
        device_backend.adam_step(*dev_arrays, **hyper)
    for name, g, e in zip(("param", "grad", "m", "v"), dev_arrays, ref_arrays):
        assert_close(to_host(device_backend, g), e, name)


@pytest.mark.parametrize("offsets", [(0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 0, 3)], ids=["aligned", "param+1", "v+3"])
def test_float4_path_and_unaligned_views(device_backend, offsets):
    """float32 goes four at a time when all four buffers are 16-byte aligned, with n % 4 left over;
    a view at an odd offset into a bigger buffer (as in a packed parameter buffer) takes the
    one-at-a-time loop."""
    n = 1031  # 257 float4 and a tail of 3
    bufs = _buffers(n, np.float32, seed=5)
    views = []
    for a, off in zip(bufs, offsets):
        big = device_backend.asarray(np.concatenate([np.zeros(off, np.float32), a]))
        views.append(big[off:])
    assert all(v.flags.c_contiguous for v in views)
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, step=3, decoupled=False)
    expected = [a.copy() for a in bufs]
    reference().adam_step(*expected, **hyper, zero_grad=True)
    device_backend.adam_step(*views, **hyper, zero_grad=True)
    for name, g, e in zip(("param", "grad", "m", "v"), views, expected):
        assert_close(to_host(device_backend, g), e, name)


def test_chunked_launches_and_grid_stride(device_backend, monkeypatch):
    """Buffers above ADAM_CHUNK are updated in several launches, each grid-striding."""
    monkeypatch.setattr(launchers, "ADAM_CHUNK", 1000)
    monkeypatch.setattr(launchers, "MAX_GRID", 1)
    bufs = _buffers(2777, np.float32, seed=2)
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=5, decoupled=False)
    expected = _run(reference(), bufs, hyper, True)
    got = _run(device_backend, bufs, hyper, True)
    for name, g, e in zip(("param", "grad", "m", "v"), got, expected):
        assert_close(g, e, name)


def test_amsgrad_falls_back_to_the_generic_path(device_backend):
    bufs = _buffers(300, np.float32, seed=3)
    max_v = np.random.default_rng(4).uniform(0.0, 1.0, 300).astype(np.float32)
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=2, decoupled=False)
    expected = _run(reference(), bufs, hyper, False, max_v)
    got = _run(device_backend, bufs, hyper, False, max_v)
    for name, g, e in zip(("param", "grad", "m", "v", "max_v"), got, expected):
        assert_close(g, e, name)


def test_empty_buffer_is_a_no_op(device_backend):
    arrays = to_device(device_backend, *_buffers(0, np.float32))
    device_backend.adam_step(*arrays, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1,
                             decoupled=False)
    assert all(a.size == 0 for a in arrays)


def test_launcher_rejects_bad_inputs(device_backend):
    be, xp, k = device_backend, device_backend.xp, device_backend.kernels
    p, g, m, v = to_device(be, *_buffers(10, np.float32))
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1, decoupled=False)
    with pytest.raises(TypeError, match="'m' must have dtype float32"):
        launchers.adam_step(k, xp, p, g, m.astype(np.float64), v, **hyper)
    with pytest.raises(ValueError, match="'v' must have shape \\(10,\\)"):
        launchers.adam_step(k, xp, p, g, m, v[:5].copy(), **hyper)
    with pytest.raises(ValueError, match="'param' must have 1 dimensions"):
        launchers.adam_step(k, xp, p.reshape(2, 5), g, m, v, **hyper)
    wide = be.asarray(np.zeros(20, np.float32))
    with pytest.raises(ValueError, match="'grad' must be C-contiguous"):
        launchers.adam_step(k, xp, p, wide[::2], m, v, **hyper)
    with pytest.raises(TypeError, match="'param' must be float32 or float64"):
        launchers.adam_step(k, xp, p.astype(np.float16), g.astype(np.float16), m.astype(np.float16),
                           v.astype(np.float16), **hyper)
    with pytest.raises(ValueError, match="'step' must be an int >= 1"):
        launchers.adam_step(k, xp, p, g, m, v, **{**hyper, "step": 0})
    with pytest.raises(ValueError, match="'step' must be an int >= 1"):
        launchers.adam_step(k, xp, p, g, m, v, **{**hyper, "step": 1.5})
    with pytest.raises(ValueError, match="'beta2' must be in \\[0, 1\\)"):
        launchers.adam_step(k, xp, p, g, m, v, **{**hyper, "beta2": 1.0})
    with pytest.raises(ValueError, match="'lr' must be a finite number"):
        launchers.adam_step(k, xp, p, g, m, v, **{**hyper, "lr": float("nan")})


def test_read_only_param_is_refused():
    from tests.kernel_support import get_kernel_backend
    be = get_kernel_backend("emulated")
    p, g, m, v = _buffers(10, np.float32)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="'param' is updated in place and must be writable"):
        launchers.adam_step(be.kernels, np, p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                           weight_decay=0.0, step=1, decoupled=False)
