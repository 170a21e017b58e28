"""Mixed-precision Adam/AdamW (kernels/adam.cu adam_step_mixed_f16 / _bf16, OptimOps.adam_step_mixed):
float32 master param, m, v; a float16 / bfloat16 gradient unscaled by inv_scale[0]; the whole update
skipped on the device when found_inf[0] != 0.

Tolerances and why:
- kernel vs the kernel adam_step_dev_f32 fed float32(grad) * inv_scale[0]: bit for bit (the same
  device constants and per-element adam_one; the unscale multiply is __fmul_rn, so not contracted).
- generic op vs adam_step_device on that float32 gradient, on the same backend: bit for bit (the
  generic op runs the same passes on scratch copies).
- kernel vs the NumPy reference: 1e-5 relative (tests/kernel_support.RTOL), because the reference
  evaluates the last line in the algebraically equal form step_size * m / (sqrt(u) + eps_hat).
- a skipped step: every buffer bit-identical, on every path.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from gpunn.backend.cuda import launchers
from tests.kernel_support import (Spy, assert_close, device_backend, get_kernel_backend, kernel_backend,  # noqa: F401
                                  reference, to_host)

BF16 = np.dtype(ml_dtypes.bfloat16)
HALVES = [pytest.param(np.dtype(np.float16), id="f16"), pytest.param(BF16, id="bf16")]
HYPER = [
    pytest.param(dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False), id="plain"),
    pytest.param(dict(beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=0.05, decoupled=False), id="coupled"),
    pytest.param(dict(beta1=0.8, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True), id="decoupled"),
]


def _bits(a):
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint16)


def _same_bits(got, expected, name):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, name
    bad = np.flatnonzero(_bits(got) != _bits(expected))
    assert bad.size == 0, f"{name}: {bad.size} elements differ, first at {bad[:5]}: {got[bad[:5]]} vs {expected[bad[:5]]}"


def _case(n, dtype, scale, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(np.float32)
    grad = (rng.standard_normal(n) * scale).astype(dtype)  # loss-scaled half gradient
    m = (rng.standard_normal(n) * 0.1).astype(np.float32)
    v = rng.uniform(0.0, 0.5, n).astype(np.float32)
    max_v = (v + rng.uniform(0.0, 0.1, n)).astype(np.float32)
    return param, grad, m, v, max_v


def _dev(be, a):
    return None if a is None else be.asarray(np.array(a, copy=True))


def _mixed(be, bufs, hyper, inv, found, step=3.0, lr=1e-2, amsgrad=False):
    param, grad, m, v, max_v = (_dev(be, a) for a in bufs)
    if not amsgrad:
        max_v = None
    scalars = _dev(be, np.array([lr, step, 7.0], np.float64))
    be.adam_step_mixed(param, grad, m, v, scalars, **hyper, inv_scale=_dev(be, np.array([inv], np.float32)),
                       found_inf=_dev(be, np.array([found], np.int32)), max_v=max_v)
    return [to_host(be, a) for a in (param, m, v, max_v)]


def _device_ref(be, bufs, hyper, inv, step=3.0, lr=1e-2, amsgrad=False):
    """adam_step_device on float32(grad) * inv_scale[0] (one float32 multiply)."""
    param, grad, m, v, max_v = bufs
    g32 = grad.astype(np.float32) * np.float32(inv)
    arrays = [_dev(be, a) for a in (param, g32, m, v, max_v if amsgrad else None)]
    be.adam_step_device(*arrays[:4], _dev(be, np.array([lr, step], np.float64)), **hyper, max_v=arrays[4])
    return [to_host(be, a) for a in (arrays[0], arrays[2], arrays[3], arrays[4])]


@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("dtype", HALVES)
def test_mixed_matches_device_step_on_the_unscaled_gradient(kernel_backend, dtype, hyper):
    """Every path (kernel, generic) against adam_step_device on the same backend bit for bit, and
    against the NumPy reference within 1e-5 relative; inv_scale rounds (1/3) for float16."""
    be = kernel_backend
    inv = 1.0 / 3.0 if dtype == np.float16 else 1.0
    bufs = _case(3001, dtype, 300.0 if dtype == np.float16 else 1.0)
    got = _mixed(be, bufs, hyper, inv, 0)
    same = _device_ref(be, bufs, hyper, inv)
    numpy_ref = _device_ref(reference(), bufs, hyper, inv)
    for name, g, s, r in zip(("param", "m", "v"), got, same, numpy_ref):
        _same_bits(g, s, name)
        assert_close(g, r, name)
    numpy_mixed = _mixed(reference(), bufs, hyper, inv, 0)
    for name, g, r in zip(("param", "m", "v"), numpy_mixed, numpy_ref):
        _same_bits(g, r, f"numpy {name}")


@pytest.mark.parametrize("dtype", HALVES)
def test_mixed_amsgrad_takes_the_generic_op(kernel_backend, dtype):
    be = kernel_backend
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True)
    bufs = _case(1000, dtype, 64.0, seed=4)
    got = _mixed(be, bufs, hyper, 1 / 64, 0, amsgrad=True)
    same = _device_ref(be, bufs, hyper, 1 / 64, amsgrad=True)
    for name, g, s in zip(("param", "m", "v", "max_v"), got, same):
        _same_bits(g, s, name)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", HALVES)
def test_skipped_step_leaves_every_buffer_bit_identical(kernel_backend, dtype, amsgrad):
    """found_inf set (here alongside an actual inf in grad): nothing changes, on every path; the
    NumPy backend too."""
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=False)
    bufs = list(_case(2000, dtype, 100.0, seed=2))
    bufs[1][1234] = np.inf
    for be in (kernel_backend, reference()):
        for found in (1, -5):
            got = _mixed(be, bufs, hyper, 0.5, found, amsgrad=amsgrad)
            for name, g, e in zip(("param", "m", "v", "max_v"), got, (bufs[0], bufs[2], bufs[3], bufs[4])):
                if g is not None:
                    _same_bits(g, e, name)


@pytest.mark.parametrize("dtype", HALVES)
def test_kernel_grid_stride_and_skip_in_every_thread(device_backend, dtype, monkeypatch):
    """2 blocks of 256 threads over ~20k elements: most are reached only through the grid-stride
    loop, and the skip holds there too; the kernel that ran is the mixed one."""
    be = device_backend
    monkeypatch.setattr(launchers, "MAX_GRID", 2)
    hyper = dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.02, decoupled=True)
    bufs = _case(20011, dtype, 8.0, seed=5)
    spy = Spy(be.kernels)
    monkeypatch.setattr(be, "kernels", spy)
    got = _mixed(be, bufs, hyper, 0.125, 0)
    assert spy.names == [f"adam_step_mixed_{'f16' if dtype == np.float16 else 'bf16'}"]
    monkeypatch.setattr(be, "kernels", spy.cache)
    same = _device_ref(be, bufs, hyper, 0.125)
    for name, g, s in zip(("param", "m", "v"), got, same):
        _same_bits(g, s, name)
    monkeypatch.setattr(be, "kernels", spy)
    skipped = _mixed(be, bufs, hyper, 0.125, 1)
    for name, g, e in zip(("param", "m", "v"), skipped, (bufs[0], bufs[2], bufs[3])):
        _same_bits(g, e, name)


def test_kernel_reads_lr_step_scale_and_flag_from_device_memory(device_backend):
    """The same launch arguments, new values in the device buffers: a replayed graph sees them."""
    be = device_backend
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
    param0, grad, m0, v0, _ = _case(300, np.float16, 16.0, seed=6)
    param, g, m, v = (_dev(be, a) for a in (param0, grad, m0, v0))
    scalars = _dev(be, np.array([1e-2, 1.0], np.float64))
    inv = _dev(be, np.array([1.0], np.float32))
    found = _dev(be, np.array([1], np.int32))
    be.adam_step_mixed(param, g, m, v, scalars, **hyper, inv_scale=inv, found_inf=found)
    _same_bits(to_host(be, param), param0, "skipped")
    found[...] = 0
    scalars[...] = np.array([3e-3, 4.0])
    inv[...] = np.float32(1 / 16)
    be.adam_step_mixed(param, g, m, v, scalars, **hyper, inv_scale=inv, found_inf=found)
    ref = _device_ref(be, (param0, grad, m0, v0, None), hyper, 1 / 16, step=4.0, lr=3e-3)
    _same_bits(to_host(be, param), ref[0], "param")
    _same_bits(to_host(be, m), ref[1], "m")


def test_use_kernels_off_takes_the_generic_op(monkeypatch):
    be = get_kernel_backend("emulated", True)
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
    bufs = _case(5000, np.float16, 4.0)
    spy = Spy(be.kernels)
    monkeypatch.setattr(be, "kernels", spy)
    old = be.use_kernels
    try:
        be.use_kernels = old - {"adam_step_mixed"}
        off = _mixed(be, bufs, hyper, 0.25, 0)
        assert not any(name.startswith("adam_step_mixed") for name in spy.names), spy.names
        be.use_kernels = old
        on = _mixed(be, bufs, hyper, 0.25, 0)
        assert spy.names[-1] == "adam_step_mixed_f16"
    finally:
        be.use_kernels = old
    # generic vs kernel: m and v bit for bit; param within 1e-5 (the two evaluate the last line in
    # algebraically equal, differently rounded forms: a few ulps on some elements)
    _same_bits(off[1], on[1], "m")
    _same_bits(off[2], on[2], "v")
    assert_close(on[0], off[0], "param")


def test_empty_buffers_do_nothing(kernel_backend):
    be = kernel_backend
    e32 = _dev(be, np.zeros(0, np.float32))
    be.adam_step_mixed(e32, _dev(be, np.zeros(0, np.float16)), _dev(be, np.zeros(0, np.float32)),
                       _dev(be, np.zeros(0, np.float32)), _dev(be, np.array([1e-3, 1.0])), 0.9, 0.999, 1e-8, 0.0,
                       False, _dev(be, np.ones(1, np.float32)), _dev(be, np.zeros(1, np.int32)))
    assert e32.shape == (0,)


@pytest.mark.parametrize("backend", ["kernels", "generic", "numpy"])
def test_bad_inputs_name_the_argument(backend):
    be = reference() if backend == "numpy" else get_kernel_backend("emulated", backend == "kernels")
    n = 8

    def args(**over):
        a = dict(param=np.zeros(n, np.float32), grad=np.zeros(n, np.float16), m=np.zeros(n, np.float32),
                 v=np.zeros(n, np.float32), scalars=np.array([1e-3, 1.0]), inv_scale=np.ones(1, np.float32),
                 found_inf=np.zeros(1, np.int32))
        a.update(over)
        # ("strided", a): a strided view made on the device (a host view would be copied contiguous)
        return {k: (_dev(be, x[1])[::2] if isinstance(x, tuple) else _dev(be, x) if isinstance(x, np.ndarray) else x)
                for k, x in a.items()}

    def call(**over):
        a = args(**over)
        be.adam_step_mixed(a["param"], a["grad"], a["m"], a["v"], a["scalars"], 0.9, 0.999, 1e-8, 0.0, False,
                           a["inv_scale"], a["found_inf"], max_v=a.get("max_v"))

    cases = [
        (dict(grad=np.zeros(n, np.float32)), TypeError, "'grad'"),
        (dict(param=np.zeros(n, np.float16)), TypeError, "'param'"),
        (dict(m=np.zeros(n, np.float64)), TypeError, "'m'"),
        (dict(v=np.zeros(n + 1, np.float32)), ValueError, "'v'"),
        (dict(grad=np.zeros(n - 1, np.float16)), ValueError, "'grad'"),
        (dict(max_v=np.zeros(n + 2, np.float32)), ValueError, "'max_v'"),
        (dict(param=np.zeros((2, 4), np.float32)), ValueError, "'param'"),
        (dict(inv_scale=np.ones(1, np.float16)), TypeError, "'inv_scale'"),
        (dict(inv_scale=np.ones(2, np.float32)), ValueError, "'inv_scale'"),
        (dict(found_inf=np.zeros(1, np.float32)), TypeError, "'found_inf'"),
        (dict(found_inf=np.zeros((1, 1), np.int32)), ValueError, "'found_inf'"),
        (dict(scalars=np.array([1e-3, 1.0], np.float32)), TypeError, "'scalars'"),
        (dict(scalars=np.array([1e-3])), ValueError, "'scalars'"),
        (dict(param=("strided", np.zeros(2 * n, np.float32))), ValueError, "'param'"),
        (dict(m=("strided", np.zeros(2 * n, np.float32))), ValueError, "'m'"),
    ]
    for over, exc, name in cases:
        with pytest.raises(exc, match=name):
            call(**over)
    # the grad is a strided view of the right length: refused, not silently copied
    with pytest.raises(ValueError, match="'grad'"):
        call(grad=("strided", np.zeros(2 * n, np.float16)))
    with pytest.raises(TypeError, match="'param'"):
        be.adam_step_mixed(np.zeros(n, np.float32).tolist(), *list(args().values())[1:5], 0.9, 0.999, 1e-8, 0.0,
                           False, *list(args().values())[5:])


def test_launcher_rejects_bad_inputs(device_backend):
    be = device_backend
    n = 4
    z32 = lambda k=n: _dev(be, np.zeros(k, np.float32))  # noqa: E731
    good = dict(param=z32(), grad=_dev(be, np.zeros(n, BF16)), m=z32(), v=z32(),
                scalars=_dev(be, np.array([1e-3, 1.0])), beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False, inv_scale=_dev(be, np.ones(1, np.float32)), found_inf=_dev(be, np.zeros(1, np.int32)))
    for over, exc, name in ((dict(grad=z32()), TypeError, "'grad'"), (dict(beta1=1.0), ValueError, "beta1"),
                            (dict(eps=-1.0), ValueError, "eps"), (dict(m=z32(n + 1)), ValueError, "'m'"),
                            (dict(found_inf=_dev(be, np.zeros(2, np.int32))), ValueError, "'found_inf'")):
        with pytest.raises(exc, match=name):
            launchers.adam_step_mixed(be.kernels, be.xp, **{**good, **over})


@pytest.mark.parametrize("use", [True, False], ids=["kernels", "generic"])
def test_captured_step_replays_with_current_flag_scale_and_lr(use):
    """Captured once in the emulator (where a host read of a device array raises), replayed: each
    replay sees the current found_inf, inv_scale, lr and step, and a flagged replay changes nothing."""
    be = get_kernel_backend("emulated", use)
    hyper = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True)
    param0, grad0, m0, v0, _ = _case(700, np.float16, 32.0, seed=8)
    param, g, m, v = (_dev(be, a) for a in (param0, grad0, m0, v0))
    scalars = _dev(be, np.array([1e-2, 1.0], np.float64))
    inv = _dev(be, np.array([1 / 32], np.float32))
    found = _dev(be, np.array([1], np.int32))
    # warm up (compile, scratch allocation) on a skipped step, then capture
    be.adam_step_mixed(param, g, m, v, scalars, **hyper, inv_scale=inv, found_inf=found)
    graph, _ = be.capture_graph(
        lambda: be.adam_step_mixed(param, g, m, v, scalars, **hyper, inv_scale=inv, found_inf=found))
    state = [param0, m0, v0]
    for step, (flag, scale, lr) in enumerate(((1, 1 / 32, 1e-2), (0, 1 / 32, 1e-2), (1, 0.5, 1e-3), (0, 1 / 16, 3e-3)),
                                             start=1):
        found[...] = flag
        inv[...] = np.float32(scale)
        scalars[...] = np.array([lr, float(step)])
        graph.replay()
        if not flag:
            ref = _device_ref(be, (state[0], grad0, state[1], state[2], None), hyper, scale, step=float(step), lr=lr)
            state = ref[:3]
        for name, got, exp in zip(("param", "m", "v"), (param, m, v), state):
            _same_bits(to_host(be, got), exp, f"replay {step} {name}")
