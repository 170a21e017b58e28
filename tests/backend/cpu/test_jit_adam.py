"""The numba-fused CPU Adam step (gpunn/backend/cpu/jit.py) against the generic chunked path.

Tolerance: at most 2 ulps per element (float32 and float64). The kernel performs the chunked
path's IEEE operations in the same order and dtype with fastmath off, so in practice the results
are bit-identical; 2 ulps leaves room for a compiler that contracts a multiply-add.
The fallback tests run without numba; the kernel tests skip cleanly where numba is absent.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from gpunn.backend.cpu import jit as cpu_jit
from gpunn.backend.cpu import threads as cpu_threads
from gpunn.backend.cpu.backend import NumpyBackend

MAXULP = 2
HYPER = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)


@pytest.fixture
def numba():
    return pytest.importorskip("numba")


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of cpu_jit.adam_step that ran the kernel (returned True)."""
    calls = []
    real = cpu_jit.adam_step

    def wrapped(*args, **kwargs):
        done = real(*args, **kwargs)
        calls.append(done)
        return done
    monkeypatch.setattr(cpu_jit, "adam_step", wrapped)
    return calls


def _buffers(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = (0.1 * rng.random(n)).astype(dtype)
    return [p, g, m, v]


def _steps(backend, bufs, wd, decoupled, zero_grad, steps=(1, 2, 3), max_v=None):
    """A few consecutive steps; the gradient is redrawn each step (zero_grad clears it)."""
    rng = np.random.default_rng(99)
    for t in steps:
        bufs[1][...] = rng.standard_normal(bufs[1].shape[0]).astype(bufs[1].dtype)
        backend.adam_step(*bufs, weight_decay=wd, step=t, decoupled=decoupled, zero_grad=zero_grad, max_v=max_v,
                          **HYPER)
    return bufs


@pytest.mark.parametrize("n", [1, 7, cpu_jit.PARALLEL_MIN + 3, 1_000_003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.1, False), (0.05, True)])
@pytest.mark.parametrize("zero_grad", [False, True])
def test_kernel_matches_chunked_path(numba, spy, n, dtype, wd, decoupled, zero_grad):
    start = _buffers(n, dtype, seed=n)
    jit = _steps(NumpyBackend(), [a.copy() for a in start], wd, decoupled, zero_grad)
    ref = _steps(NumpyBackend(fast_paths=False), [a.copy() for a in start], wd, decoupled, zero_grad)
    assert spy == [True, True, True]  # the fused kernel ran every step
    for name, a, b in zip(("param", "grad", "m", "v"), jit, ref):
        assert a.dtype == dtype, name
        np.testing.assert_array_max_ulp(a, b, maxulp=MAXULP)
    assert not np.array_equal(jit[0], start[0])  # the step moved the parameters
    if zero_grad:
        assert not jit[1].any()
    else:
        assert jit[1].any()  # coupled decay must not be written into the gradient


@pytest.mark.parametrize("threads", ["1", "2"])
def test_thread_count_follows_setting_and_keeps_bits(numba, monkeypatch, threads):
    n = cpu_jit.PARALLEL_MIN * 2 + 11
    start = _buffers(n, np.float32, seed=4)
    monkeypatch.setenv("GPUNN_NUM_THREADS", "1")
    one = _steps(NumpyBackend(), [a.copy() for a in start], 0.1, False, False)
    monkeypatch.setenv("GPUNN_NUM_THREADS", threads)
    splits = []
    real_run = cpu_threads.run
    monkeypatch.setattr(cpu_threads, "run", lambda fn, ranges, *a: splits.append(len(ranges)) or real_run(fn, ranges, *a))
    many = _steps(NumpyBackend(), [a.copy() for a in start], 0.1, False, False)
    assert splits and set(splits) == {int(threads)}  # one range per thread, each a serial kernel
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_amsgrad_and_disabled_fast_paths_use_the_chunked_path(numba, spy):
    start = _buffers(50, np.float64, seed=2)
    mv0 = np.full(50, 0.05)
    a = _steps(NumpyBackend(), [x.copy() for x in start], 0.1, True, False, max_v=mv0.copy())
    b = _steps(NumpyBackend(fast_paths=False), [x.copy() for x in start], 0.1, True, False, max_v=mv0.copy())
    assert spy == []  # AMSGrad never reaches the kernel
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    _steps(NumpyBackend(fast_paths=False), [x.copy() for x in start], 0.0, False, False)
    assert spy == []


def test_unusual_arrays_fall_back_and_bad_input_still_names_the_argument(numba, spy):
    backend = NumpyBackend()
    p, g, m, v = _buffers(8, np.float64)
    with pytest.raises(TypeError, match="argument 'grad'"):
        backend.adam_step(p, g.astype(np.float32), m, v, weight_decay=0.0, step=1, decoupled=False, **HYPER)
    with pytest.raises(ValueError, match="argument 'm'"):
        backend.adam_step(p, g, m[:4], v, weight_decay=0.0, step=1, decoupled=False, **HYPER)
    with pytest.raises(ValueError, match="argument 'step' must be an int >= 1"):
        backend.adam_step(p, g, m, v, weight_decay=0.0, step=0, decoupled=False, **HYPER)
    with pytest.raises(ValueError, match="argument 'v' must be contiguous"):
        backend.adam_step(p, g, m, np.zeros(16)[::2], weight_decay=0.0, step=1, decoupled=False, **HYPER)
    # float16 is not compiled: the chunked path serves it, in float16
    h = [a.astype(np.float16) for a in (p, g, m, v)]
    backend.adam_step(*h, weight_decay=0.0, step=1, decoupled=False, **HYPER)
    assert h[0].dtype == np.float16 and not np.array_equal(h[0], p.astype(np.float16))
    assert not any(spy)


def test_empty_buffers_are_a_no_op(numba):
    e = [np.empty(0, np.float32) for _ in range(4)]
    assert cpu_jit.adam_step(*e, weight_decay=0.0, step=1, decoupled=False, **HYPER) is True


def test_fallback_when_numba_is_unavailable(monkeypatch, spy):
    """No numba: the backend's adam_step runs the chunked path and gives its exact results."""
    monkeypatch.setattr(cpu_jit, "numba_available", lambda: False)
    start = _buffers(1001, np.float32, seed=7)
    a = _steps(NumpyBackend(), [x.copy() for x in start], 0.05, True, True)
    b = _steps(NumpyBackend(fast_paths=False), [x.copy() for x in start], 0.05, True, True)
    assert spy == [False, False, False]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_numba_available_is_cached_and_never_raises(monkeypatch):
    import sys
    monkeypatch.setattr(cpu_jit, "_state", {})
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    assert cpu_jit.numba_available() is False
    monkeypatch.delitem(sys.modules, "numba")
    assert cpu_jit.numba_available() is False  # cached: not probed again
    assert cpu_jit.adam_step(*_buffers(4, np.float64), weight_decay=0.0, step=1, decoupled=False,
                             **HYPER) is False


def test_compile_failure_disables_the_kernel(numba, monkeypatch, caplog):
    from numba.core.errors import TypingError

    def broken(*args):
        raise TypingError("simulated compile failure")
    monkeypatch.setattr(cpu_jit, "_state", {"ok": True})
    monkeypatch.setattr(cpu_jit, "_build", lambda: broken)
    start = _buffers(64, np.float32, seed=8)
    with caplog.at_level(logging.WARNING, logger="gpunn.backend.cpu.jit"):
        a = _steps(NumpyBackend(), [x.copy() for x in start], 0.0, False, False)
    assert "could not compile" in caplog.text
    assert cpu_jit._state["ok"] is False  # later steps skip the kernel
    b = _steps(NumpyBackend(fast_paths=False), [x.copy() for x in start], 0.0, False, False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_other_errors_from_the_kernel_propagate(numba, monkeypatch):
    def boom(*args):
        raise MemoryError("not a compile failure")
    monkeypatch.setattr(cpu_jit, "_state", {"ok": True})
    monkeypatch.setattr(cpu_jit, "_build", lambda: boom)
    with pytest.raises(MemoryError):
        cpu_jit.adam_step(*_buffers(4, np.float64), weight_decay=0.0, step=1, decoupled=False, **HYPER)


def test_no_writable_cache_compiles_without_caching(numba, monkeypatch):
    """numba refuses cache=True where it finds no writable cache directory; the kernel then
    compiles per process instead of failing."""
    real = numba.njit
    seen = []

    def njit(**kwargs):
        seen.append(kwargs["cache"])
        if kwargs["cache"]:
            raise RuntimeError("cannot cache function: no locator available")
        return real(**kwargs)
    monkeypatch.setattr(cpu_jit, "_state", {"ok": True})
    monkeypatch.setattr(numba, "njit", njit)
    start = _buffers(33, np.float64, seed=9)
    a = _steps(NumpyBackend(), [x.copy() for x in start], 0.1, False, True)
    b = _steps(NumpyBackend(fast_paths=False), [x.copy() for x in start], 0.1, False, True)
    assert seen == [True, False]
    assert cpu_jit._state["ok"] is True and "kernel" in cpu_jit._state  # the kernel ran, uncached
    for x, y in zip(a, b):
        np.testing.assert_array_max_ulp(x, y, maxulp=MAXULP)
