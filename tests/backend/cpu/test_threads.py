"""gpunn's CPU threads (gpunn/backend/cpu/threads.py): the range split, the pool, BLAS held to one
thread inside a split op, and every NumPy-backend op that splits agreeing with the generic op when
forced onto 2 and 3 threads (float64, tight tolerance)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from gpunn.backend.cpu import jit as cpu_jit
from gpunn.backend.cpu import threads as cpu_threads
from gpunn.backend.cpu.backend import NumpyBackend

FAST, GENERIC = NumpyBackend(), NumpyBackend(fast_paths=False)
TOL = dict(rtol=1e-12, atol=1e-12)


def _rand(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture(params=[2, 3])
def forced_threads(request, monkeypatch):
    """Split every op, however small, over 2 or 3 threads."""
    monkeypatch.setenv("GPUNN_NUM_THREADS", str(request.param))
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 1)
    seen = []
    real = cpu_threads.run
    monkeypatch.setattr(cpu_threads, "run", lambda fn, ranges, *a: seen.append(len(ranges)) or real(fn, ranges, *a))
    return seen


# -- the machinery --------------------------------------------------------------------------------
@pytest.mark.parametrize("total,parts,align", [(10, 3, 1), (10, 4, 4), (1, 3, 1), (7, 1, 2), (4096 * 3 + 5, 2, 4096)])
def test_split_covers_the_range_in_order(total, parts, align):
    ranges = cpu_threads.split(total, parts, align)
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(hi > lo for lo, hi in ranges) and len(ranges) <= parts
    assert all(lo % align == 0 for lo, _ in ranges)


def test_split_of_nothing_is_empty():
    assert cpu_threads.split(0, 4) == []


def test_run_returns_in_order_and_uses_other_threads(monkeypatch):
    monkeypatch.setenv("GPUNN_NUM_THREADS", "3")
    names = []
    out = cpu_threads.run(lambda lo, hi: names.append(threading.current_thread().name) or (lo, hi),
                          [(0, 1), (1, 2), (2, 3)])
    assert out == [(0, 1), (1, 2), (2, 3)]
    assert len(set(names)) >= 2  # the caller plus pool workers


def test_run_propagates_errors_after_all_ranges_finish(monkeypatch):
    monkeypatch.setenv("GPUNN_NUM_THREADS", "2")
    done = []

    def fn(lo, hi):
        if lo == 1:
            raise ValueError("boom")
        done.append(lo)
    with pytest.raises(ValueError, match="boom"):
        cpu_threads.run(fn, [(0, 1), (1, 2), (2, 3)])
    assert sorted(done) == [0, 2]


def test_blas_is_held_to_one_thread_inside_and_restored_after(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ctls = cpu_threads._blas_controllers()
    if not any("numpy" in c.filepath for c in ctls):
        pytest.skip("NumPy's BLAS is not one threadpoolctl can drive")
    monkeypatch.setenv("GPUNN_NUM_THREADS", "2")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        inside = cpu_threads.run(lambda lo, hi: {c.get_num_threads() for c in ctls}, [(0, 1), (1, 2)])
        after = {c.get_num_threads() for c in ctls}
    assert inside == [{1}, {1}] and after == {2}


def test_nested_splits_run_inline(monkeypatch):
    monkeypatch.setenv("GPUNN_NUM_THREADS", "2")

    def outer(lo, hi):
        return cpu_threads.run(lambda a, b: threading.current_thread().name, [(0, 1), (1, 2)])
    inner = cpu_threads.run(outer, [(0, 1), (1, 2)])
    assert len(set(inner[1])) == 1  # the worker's own split did not fan out again


@pytest.fixture
def two_cpus(monkeypatch):
    """A fresh thread-count state on a machine that looks like it has 2 CPUs (a ceiling of 8)."""
    monkeypatch.delenv("GPUNN_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "_state", {})
    monkeypatch.setattr(cpu_threads, "cpu_limit", lambda: 2, raising=False)
    monkeypatch.setattr(cpu_threads, "OVERSUBSCRIBE", 4, raising=False)  # a ceiling of 8 threads


def test_thread_count_setting(two_cpus, monkeypatch):
    cpu_threads.set_num_threads(3)
    assert cpu_threads.get_num_threads() == 3
    monkeypatch.setenv("GPUNN_NUM_THREADS", "5")
    assert cpu_threads.get_num_threads() == 5  # the environment wins
    monkeypatch.setenv("GPUNN_NUM_THREADS", " 6 ")
    assert cpu_threads.get_num_threads() == 6
    monkeypatch.setenv("GPUNN_NUM_THREADS", "")  # empty is unset: no warning
    assert cpu_threads.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "2", None])
def test_set_num_threads_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="^set_num_threads: argument 'threads' must be a positive int, got"):
        cpu_threads.set_num_threads(bad)


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "2.5", "4 threads"])
def test_a_bad_env_thread_count_warns_once_and_falls_back(two_cpus, monkeypatch, bad):
    """GPUNN_NUM_THREADS=0|-1|abc used to be ignored without a word."""
    cpu_threads.set_num_threads(3)
    monkeypatch.setenv("GPUNN_NUM_THREADS", bad)
    with pytest.warns(RuntimeWarning) as caught:
        assert cpu_threads.get_num_threads() == 3  # set_num_threads()'s count
    (w,) = caught
    msg = str(w.message)
    assert "GPUNN_NUM_THREADS" in msg and repr(bad) in msg and "whole number of threads >= 1" in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per value: the hot path does not warn on every op
        assert cpu_threads.get_num_threads() == 3


def test_a_huge_env_thread_count_is_capped(two_cpus, monkeypatch):
    """GPUNN_NUM_THREADS=999999 used to start a worker thread per MIN_WORK elements of an op (381
    threads on a 2-core machine)."""
    monkeypatch.setenv("GPUNN_NUM_THREADS", "999999")
    with pytest.warns(RuntimeWarning, match=r"GPUNN_NUM_THREADS='999999' asks for 999999 threads, .* using 8"):
        assert cpu_threads.get_num_threads() == 8
    monkeypatch.setattr(cpu_threads, "MIN_WORK", 1)
    before = threading.active_count()
    assert len(cpu_threads.split(10**6, cpu_threads.get_num_threads())) == 8
    cpu_threads.parallel_for(lambda lo, hi: None, 10**6, work=10**6)
    assert threading.active_count() - before <= 8


def test_set_num_threads_caps_a_huge_count(two_cpus):
    with pytest.warns(RuntimeWarning, match=r"set_num_threads\(100\) asks for 100 threads, .* using 8"):
        cpu_threads.set_num_threads(100)
    assert cpu_threads.get_num_threads() == 8
    cpu_threads.set_num_threads(np.int64(8))  # up to the ceiling: honoured, no warning
    assert cpu_threads.get_num_threads() == 8


def test_the_default_never_exceeds_the_cpus(two_cpus):
    assert 1 <= cpu_threads.get_num_threads() <= 2


def test_a_bad_env_thread_count_in_a_fresh_process_warns_and_runs():
    code = "from gpunn.backend.cpu import threads as cpu_threads; print(cpu_threads.get_num_threads())"
    env = {**os.environ, "GPUNN_NUM_THREADS": "abc"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 1
    assert "RuntimeWarning: environment variable GPUNN_NUM_THREADS must be a whole number" in proc.stderr


# -- every split op agrees with the generic op -----------------------------------------------------
@pytest.mark.parametrize("case", [((5, 3, 7, 6), (4, 3, 3), (1, 1), (1, 1)),
                                  ((4, 1, 9, 9), (6, 5, 5), (2, 2), (1, 1)),
                                  ((6, 4, 8, 7), (2, 3, 3), (0, 1), (2, 1))], ids=str)
@pytest.mark.parametrize("direct", [True, False])
def test_split_conv_matches_generic(forced_threads, monkeypatch, case, direct):
    from gpunn.backend.cpu import conv as cpu_conv
    if not direct:
        for name in ("DIRECT_MAX_WEIGHTS", "DIRECT_DW_MAX_WEIGHTS", "DIRECT_DX_MAX_WEIGHTS"):
            monkeypatch.setattr(cpu_conv, name, 0)
    monkeypatch.setattr(cpu_conv, "_CHUNK_BYTES", 64)  # groups of one sample: many groups per thread
    monkeypatch.setattr(cpu_conv, "_DIRECT_GROUP", 8)
    shape, (f, kh, kw), pad, dil = case
    x, w, b = _rand(shape, 0), _rand((f, shape[1], kh, kw), 1), _rand((f,), 2)
    geo = ((1, 1), pad, dil)
    y, cache = FAST.conv2d_forward(x, w, b, *geo)
    y_ref, cols = GENERIC.conv2d_forward(x, w, b, *geo)
    np.testing.assert_allclose(y, y_ref, **TOL)
    dy = _rand(y.shape, 3)
    got = FAST.conv2d_backward(dy, x.shape, w, cache, *geo)
    ref = GENERIC.conv2d_backward(dy, x.shape, w, cols, *geo)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, **TOL)
    assert max(forced_threads) > 1


def test_split_pool_batchnorm_relu_match_generic(forced_threads):
    pytest.importorskip("numba")
    x = _rand((4, 6, 8, 8), 0)
    y, am = FAST.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    y_ref, am_ref = GENERIC.maxpool2d_forward(x, 2, 2, (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(am, am_ref)
    dy = _rand(y.shape, 1)
    np.testing.assert_array_equal(FAST.maxpool2d_backward(dy, am, x.shape, 2, 2, (2, 2), (0, 0)),
                                  GENERIC.maxpool2d_backward(dy, am_ref, x.shape, 2, 2, (2, 2), (0, 0)))
    g, be = _rand((6,), 2), _rand((6,), 3)
    stats = [(np.zeros(6), np.ones(6)) for _ in range(2)]
    fwd = [bk.batchnorm_forward_train(x, g, be, *st, 0.1, 1e-5) for bk, st in zip((FAST, GENERIC), stats)]
    for a, r in zip(fwd[0], fwd[1]):
        np.testing.assert_allclose(a, r, **TOL)
    np.testing.assert_allclose(stats[0][1], stats[1][1], **TOL)
    dyb = _rand(x.shape, 4)
    for a, r in zip(FAST.batchnorm_backward(dyb, x, g, *fwd[0][1:]), GENERIC.batchnorm_backward(dyb, x, g, *fwd[1][1:])):
        np.testing.assert_allclose(a, r, **TOL)
    r = FAST.relu_forward(x)
    np.testing.assert_array_equal(r, GENERIC.relu_forward(x))
    np.testing.assert_array_equal(FAST.relu_backward(dyb, r), GENERIC.relu_backward(dyb, r))
    assert max(forced_threads) > 1


def test_split_matmul_matches_generic(forced_threads):
    a, b = _rand((37, 11), 0), _rand((11, 5), 1)
    np.testing.assert_allclose(FAST.matmul(a, b), a @ b, **TOL)
    np.testing.assert_allclose(FAST.matmul(a.T[:, :7].T, b), a.T[:, :7].T @ b, **TOL)  # a strided operand
    assert max(forced_threads) > 1


def test_split_adam_matches_one_thread(forced_threads):
    pytest.importorskip("numba")
    n = cpu_jit.PARALLEL_MIN + 4097
    bufs = [_rand((n,), i, np.float32) for i in range(4)]
    bufs[3] = np.abs(bufs[3])
    one = [a.copy() for a in bufs]
    FAST.adam_step(*bufs, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUNN_NUM_THREADS", "1")
        FAST.adam_step(*one, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, True)
    for a, r in zip(bufs, one):
        np.testing.assert_array_equal(a, r)
    assert max(forced_threads) > 1


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_workers(monkeypatch):
    """After fork the parent's worker threads do not exist in the child; a split op there must
    start new ones instead of waiting forever on the old ones."""
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "os.environ['GPUNN_NUM_THREADS'] = '2'\n"
        "from gpunn.backend.cpu import threads as cpu_threads\n"
        "assert cpu_threads.run(lambda lo, hi: hi - lo, [(0, 1), (1, 3)]) == [1, 2]\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = cpu_threads.run(lambda lo, hi: hi - lo, [(0, 2), (2, 5)]) == [2, 3]\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
