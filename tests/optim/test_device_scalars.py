"""The optimizers' device scalars (gpunn/optim/base.py): lr, step count and per-step values live in
device memory, written by prepare_step() on the host and read by apply_step() on the device, so a
step captured as a CUDA graph replays with the current values. On NumPy and the emulated backend."""
from __future__ import annotations

import math
from unittest.mock import PropertyMock, patch

import numpy as np
import pytest

import gpunn
from gpunn import Parameter
from gpunn.backend import to_host
from gpunn.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, RMSprop

CASES = [
    (SGD, dict(momentum=0.9)),
    (SGD, dict(momentum=0.9, nesterov=True)),
    (Adagrad, dict(lr_decay=0.1)),
    (RMSprop, dict(momentum=0.5, centered=True)),
    (Adadelta, dict(weight_decay=0.1)),
    (Adam, dict(weight_decay=0.1)),
    (Adam, dict(amsgrad=True)),
    (AdamW, dict(weight_decay=0.1)),
    (Nadam, dict()),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw in CASES]
LRS = [0.01, 0.05, 0.002, 0.03, 0.01]  # a schedule that changes every step


@pytest.fixture(params=["numpy", "emulated"])
def be(request):
    if request.param == "emulated":
        request.getfixturevalue("emulated")
    with gpunn.use_backend(request.param) as backend:
        yield backend


def make(backend, cls, kw, dtype=np.float64, n=11):
    rng = np.random.default_rng(0)
    p = Parameter(backend.asarray(rng.standard_normal(n).astype(dtype)))
    return p, cls([p], **kw)


def grad_of(x):
    return 0.7 * x + np.linspace(-1.0, 1.0, x.size)  # a quadratic's gradient


def set_grad(backend, p):
    p.grad[...] = backend.asarray(grad_of(to_host(p.data)).astype(p.data.dtype))


def reference(cls, kw, x0, lrs):
    """PyTorch's formulas, written out in float64, with lr changing every step."""
    x = x0.copy()
    n = x.size
    m, v, vmax, s, u = (np.zeros(n) for _ in range(5))
    mu_prod = 1.0
    for t, lr in enumerate(lrs, start=1):
        g = grad_of(x)
        wd = kw.get("weight_decay", 0.0)
        if cls is SGD:
            m = kw["momentum"] * m + g
            x = x - lr * ((g + kw["momentum"] * m) if kw.get("nesterov") else m)
        elif cls is Adagrad:
            s = s + g * g
            x = x - lr / (1 + (t - 1) * kw["lr_decay"]) * g / (np.sqrt(s) + 1e-10)
        elif cls is RMSprop:
            rho = 0.99
            s = rho * s + (1 - rho) * g * g
            m = rho * m + (1 - rho) * g  # grad_avg (centered)
            u = kw["momentum"] * u + g / (np.sqrt(s - m * m) + 1e-8)
            x = x - lr * u
        elif cls is Adadelta:
            g = g + wd * x
            s = 0.9 * s + 0.1 * g * g
            d = np.sqrt(u + 1e-6) / np.sqrt(s + 1e-6) * g
            u = 0.9 * u + 0.1 * d * d
            x = x - lr * d
        elif cls in (Adam, AdamW):
            if cls is AdamW:
                x = x * (1 - lr * wd)
            else:
                g = g + wd * x
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            vmax = np.maximum(vmax, v)
            w = vmax if kw.get("amsgrad") else v
            x = x - lr / (1 - 0.9 ** t) * m / (np.sqrt(w) / math.sqrt(1 - 0.999 ** t) + 1e-8)
        elif cls is Nadam:
            mu = 0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3))
            mu_next = 0.9 * (1 - 0.5 * 0.96 ** ((t + 1) * 4e-3))
            mu_prod *= mu
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            denom = np.sqrt(v / (1 - 0.999 ** t)) + 1e-8
            x = x - lr * (1 - mu) / (1 - mu_prod) * g / denom - lr * mu_next / (1 - mu_prod * mu_next) * m / denom
    return x


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_slots_follow_the_host_after_k_steps(be, cls, kw):
    p, opt = make(be, cls, kw)
    for k, lr in enumerate(LRS, start=1):
        opt.lr = lr
        set_grad(be, p)
        opt.step()
        slots = to_host(opt._scalars)
        assert opt.step_count == k and slots[1] == k
        assert slots[0] == opt.lr


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_lr_changed_between_steps_matches_the_formulas(be, cls, kw):
    p, opt = make(be, cls, kw)
    x0 = to_host(p.data).copy()
    for lr in LRS:
        opt.lr = lr
        set_grad(be, p)
        opt.step()
    np.testing.assert_allclose(to_host(p.data), reference(cls, kw, x0, LRS), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_apply_step_reads_the_lr_prepare_step_wrote(be, cls, kw):
    p, opt = make(be, cls, kw)
    x0 = to_host(p.data).copy()
    for lr in LRS:
        opt.lr = lr
        set_grad(be, p)
        opt.prepare_step()
        opt._lr = 123.0  # garbage on the host: apply_step must not look at it
        opt.apply_step()
        opt._lr = lr
    np.testing.assert_allclose(to_host(p.data), reference(cls, kw, x0, LRS), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_apply_step_under_capturing_skips_the_norm_check(be, cls, kw):
    p, opt = make(be, cls, {**kw, "clipnorm": 1.0})
    set_grad(be, p)
    opt.step()
    p.grad[...] = be.asarray(np.full(p.grad.shape, np.inf))
    opt.prepare_step()
    with pytest.raises(FloatingPointError, match="norm"):
        opt.apply_step()  # eagerly: the check runs, nothing is applied
    assert opt.step_count == 1 and to_host(opt._scalars)[1] == 1
    set_grad(be, p)
    opt.prepare_step()
    with patch.object(type(be), "capturing", new_callable=PropertyMock, return_value=True), \
            np.errstate(all="ignore"):
        p.grad[...] = be.asarray(np.full(p.grad.shape, np.nan))
        opt.apply_step()  # "capturing": no host read, so no check; the NaN propagates
    assert np.isnan(to_host(p.data)).all()
    assert opt.step_count == 2 and to_host(opt._scalars)[1] == 2


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_a_captured_step_replays_the_current_lr(emulated, cls, kw):
    """The real proof on the emulator's recorder: capture apply_step once, replay it per step with
    the lr changing, and land where eager steps land, bit for bit."""
    with gpunn.use_backend(emulated):
        pa, eager = make(emulated, cls, {**kw, "clipnorm": 0.5})
        pb, captured = make(emulated, cls, {**kw, "clipnorm": 0.5})
        set_grad(emulated, pb)
        captured.prepare_step()
        graph, _ = emulated.capture_graph(captured.apply_step)
        captured._step_count -= 1  # the capture ran nothing: the first replay is step 1
        for lr in LRS:
            for p, opt in ((pa, eager), (pb, captured)):
                opt.lr = lr
                set_grad(emulated, p)
            eager.step()
            captured.prepare_step()
            graph.replay()
        np.testing.assert_array_equal(to_host(pb.data), to_host(pa.data))
        assert to_host(captured._scalars)[1] == captured.step_count == len(LRS)


def test_state_dict_and_move_keep_the_device_slots(be):
    p, opt = make(be, Nadam, {})
    for lr in LRS[:3]:
        opt.lr = lr
        set_grad(be, p)
        opt.step()
    state = opt.state_dict()
    assert set(state) == {"optimizer", "step", "hyperparams", "scalars", "state"}
    assert state["scalars"]["mu_product"] == to_host(opt._scalars)[3] != 1.0
    q, other = make(be, Nadam, {})
    other.load_state_dict(state)
    assert to_host(other._scalars)[1] == 3 and other.mu_product == state["scalars"]["mu_product"]
    with gpunn.use_backend("numpy") as numpy_backend:
        opt.move_to(numpy_backend)
        set_grad(numpy_backend, p)
        opt.step()
        assert to_host(opt._scalars)[1] == 4 == opt.step_count
        assert opt.mu_product != state["scalars"]["mu_product"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 0.1), (True, 0.1)])
def test_adam_kernel_with_device_scalars_matches_numpy(emulated, dtype, decoupled, wd):
    from gpunn.backend import backend_named

    reference_backend = backend_named("numpy", "test")
    rng = np.random.default_rng(1)
    n = 1001  # float4 body and a tail
    bufs = [rng.standard_normal(n).astype(dtype) for _ in range(3)] + [rng.uniform(0, 0.5, n).astype(dtype)]
    expected = [b.copy() for b in bufs]
    reference_backend.adam_step(*expected, 0.01, 0.9, 0.999, 1e-8, wd, 3, decoupled)
    runs = []
    for _ in range(2):
        arrays = [emulated.asarray(b.copy()) for b in bufs]
        scalars = emulated.asarray(np.array([0.01, 3.0, -1.0]))  # slots past the second are not read
        emulated.adam_step_device(*arrays, scalars, 0.9, 0.999, 1e-8, wd, decoupled)
        runs.append([to_host(a).copy() for a in arrays])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(runs[0], expected):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)  # deterministic


def test_adam_step_device_generic_path_matches(emulated):
    """The generic op (AMSGrad, or kernels off) computes the constants on the device too."""
    rng = np.random.default_rng(2)
    bufs = [rng.standard_normal(64) for _ in range(3)] + [rng.uniform(0, 0.5, 64), rng.uniform(0, 0.5, 64)]
    expected = [b.copy() for b in bufs]
    from gpunn.backend import backend_named

    backend_named("numpy", "test").adam_step(*expected[:4], 0.02, 0.9, 0.99, 1e-8, 0.1, 5, True, max_v=expected[4])
    arrays = [emulated.asarray(b.copy()) for b in bufs]
    emulated.adam_step_device(*arrays[:4], emulated.asarray(np.array([0.02, 5.0])), 0.9, 0.99, 1e-8, 0.1, True,
                              max_v=arrays[4])
    for got, want in zip(arrays, expected):
        np.testing.assert_allclose(to_host(got), want, rtol=1e-12)


@pytest.mark.parametrize("bad,err,match", [
    (np.array([0.01, 1.0], dtype=np.float32), TypeError, "'scalars' must have dtype float64"),
    (np.array([0.01]), ValueError, "'scalars' must be 1-D with at least 2"),
    (np.zeros((2, 2)), ValueError, "'scalars' must be 1-D with at least 2"),
    (np.array([0.01, 1.0, 0.0, 0.0])[::2], ValueError, "'scalars' must be contiguous"),
    ([0.01, 1.0], TypeError, "'scalars' must be a"),
])
def test_adam_step_device_rejects_bad_scalars(be, bad, err, match):
    p, g, m, v = (be.asarray(np.ones(8)) for _ in range(4))
    scalars = bad if isinstance(bad, list) else be.asarray(bad)
    with pytest.raises(err, match=match):
        be.adam_step_device(p, g, m, v, scalars, 0.9, 0.999, 1e-8, 0.0, False)


def test_squared_norm_device_stays_an_array(be):
    g = be.asarray(np.array([3.0, 4.0]))
    ss = be.squared_norm_device(g)
    assert tuple(ss.shape) == (1,) and to_host(ss)[0] == 25.0
    assert to_host(be.squared_norm_device(be.asarray(np.zeros(0))))[0] == 0.0


def test_apply_step_before_prepare_step_says_so(be):
    _, opt = make(be, SGD, {})
    with pytest.raises(RuntimeError, match="prepare_step"):
        opt.apply_step()
