"""backend.adam_step against the contract written in gpunn/backend/ops/optim.py (PyTorch's form)."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn.backend.cpu.backend as cpu_backend


def reference(p, g, m, v, lr, b1, b2, eps, wd, t, decoupled, max_v=None):
    """The docstring's formulas, written out plainly in float64."""
    p, g, m, v = (a.astype(np.float64) for a in (p, g, m, v))
    if decoupled:
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    u = v
    if max_v is not None:
        max_v = np.maximum(max_v.astype(np.float64), v)
        u = max_v
    p = p - (lr / (1 - b1 ** t)) * m / (np.sqrt(u) / np.sqrt(1 - b2 ** t) + eps)
    return p, m, v, max_v


def arrays(backend, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = (0.1 * rng.random(n)).astype(dtype)
    return p, g, m, v


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("decoupled,wd,amsgrad", [(False, 0.0, False), (False, 0.1, True), (True, 0.05, False),
                                                  (True, 0.05, True)])
def test_adam_step_matches_contract(backend, dtype, rtol, decoupled, wd, amsgrad):
    n = 37
    p, g, m, v = arrays(backend, n, dtype)
    max_v = (0.2 * np.random.default_rng(5).random(n)).astype(dtype) if amsgrad else None
    want = reference(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, wd, 3, decoupled, max_v)
    dp, dg, dm, dv = (backend.asarray(a.copy()) for a in (p, g, m, v))
    dmax = backend.asarray(max_v.copy()) if amsgrad else None
    backend.adam_step(dp, dg, dm, dv, 0.01, 0.9, 0.999, 1e-8, wd, 3, decoupled, max_v=dmax)
    np.testing.assert_allclose(backend.to_numpy(dp), want[0], rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(backend.to_numpy(dm), want[1], rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(backend.to_numpy(dv), want[2], rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_array_equal(backend.to_numpy(dg), g)  # coupled decay must not write into grad
    if amsgrad:
        np.testing.assert_allclose(backend.to_numpy(dmax), want[3], rtol=rtol)


def test_zero_grad_clears_the_gradient_after_use(backend):
    p, g, m, v = arrays(backend, 20, np.float64)
    want = reference(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, 1, False)
    dp, dg, dm, dv = (backend.asarray(a.copy()) for a in (p, g, m, v))
    backend.adam_step(dp, dg, dm, dv, 0.01, 0.9, 0.999, 1e-8, 0.1, 1, False, zero_grad=True)
    assert not backend.to_numpy(dg).any()
    np.testing.assert_allclose(backend.to_numpy(dp), want[0], rtol=1e-12)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_chunked_and_threaded_paths_equal_one_pass(monkeypatch, threads):
    """Small chunks (so there are many, plus a ragged tail) and worker threads give the same bits."""
    from gpunn.backend import get_backend
    backend = get_backend()  # NumPy: the chunked path lives there
    n = 16 * 13 + 5
    p, g, m, v = arrays(backend, n, np.float32, seed=3)
    max_v = np.zeros(n, np.float32)
    one = [a.copy() for a in (p, g, m, v, max_v)]
    backend.adam_step(*one[:4], 0.01, 0.9, 0.999, 1e-8, 0.1, 4, False, max_v=one[4])
    monkeypatch.setattr(cpu_backend, "ADAM_CHUNK", 16)
    monkeypatch.setenv("GPUNN_NUM_THREADS", threads)
    many = [a.copy() for a in (p, g, m, v, max_v)]
    backend.adam_step(*many[:4], 0.01, 0.9, 0.999, 1e-8, 0.1, 4, False, max_v=many[4])
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_adam_step_bad_input(backend):
    p, g, m, v = (backend.asarray(a) for a in arrays(backend, 8, np.float64))
    with pytest.raises(ValueError, match="argument 'm'"):
        backend.adam_step(p, g, m[:4], v, 0.01, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(TypeError, match="argument 'grad'"):
        backend.adam_step(p, g.astype(np.float32), m, v, 0.01, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match="argument 'v'"):
        backend.adam_step(p, g, m, v.reshape(2, 4), 0.01, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match="argument 'step' must be an int >= 1"):
        backend.adam_step(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.0, 0, False)
