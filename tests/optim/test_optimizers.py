"""Optimizers: flat buffers, the seeds' hand formulas, state round trips, freezing, clipping, bad input."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpunn
from gpunn import Parameter
from gpunn.optim import (SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, RMSprop, clip_grad_norm, clip_grad_value,
                         get_optimizer)

ALL = [
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (Adagrad, {"lr": 0.1, "weight_decay": 0.01}),
    (RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
    (Adadelta, {"lr": 1.0, "weight_decay": 0.01}),
    (Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    (AdamW, {"lr": 0.01}),
    (Nadam, {"lr": 0.01, "weight_decay": 0.01}),
]
IDS = [c.__name__ for c, _ in ALL]


def make_params(backend, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    w = Parameter(backend.asarray(rng.standard_normal((3, 2)).astype(dtype)), name="w")
    b = Parameter(backend.asarray(rng.standard_normal(2).astype(dtype)), name="b")
    return [w, b]


def set_grads(backend, params, seed):
    """Deterministic pseudo-gradients that depend on the current values (like a real loss)."""
    rng = np.random.default_rng(seed)
    for p in params:
        host = backend.to_numpy(p.data)
        p.grad[...] = backend.asarray(2.0 * host + rng.standard_normal(host.shape).astype(host.dtype))


def host(backend, params):
    return np.concatenate([backend.to_numpy(p.data).ravel() for p in params])


# -- flat buffers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", ALL, ids=IDS)
def test_packing_keeps_values_and_rebinds_views(backend, cls, kw):
    params = make_params(backend)
    before = host(backend, params)
    grads_before = [backend.to_numpy(p.grad).copy() for p in params]
    opt = cls(params, **kw)
    flat = opt.flat_data
    assert flat.shape == (8,)
    np.testing.assert_array_equal(backend.to_numpy(flat), before)
    for p, g in zip(params, grads_before):
        np.testing.assert_array_equal(backend.to_numpy(p.grad), g)
    # writing through the flat buffer is seen by the parameter: they share memory
    flat[0] = 123.0
    assert float(backend.to_numpy(params[0].data)[0, 0]) == 123.0
    opt.flat_grad[-1] = 7.0
    assert float(backend.to_numpy(params[1].grad)[-1]) == 7.0
    opt.zero_grad()
    assert all(not backend.to_numpy(p.grad).any() for p in params)


def test_model_is_collected_lazily_and_trains(backend):
    from gpunn import Sequential
    from gpunn.layers import Dense
    model = Sequential([Dense(4, activation="tanh"), Dense(1)])
    opt = Adam(model, lr=0.01)  # not built yet: parameters() is empty until the first forward
    x = backend.asarray(np.random.default_rng(0).standard_normal((8, 3)))
    y = model.forward(x, training=True)
    model.backward(backend.asarray(np.ones_like(backend.to_numpy(y))))
    w0 = backend.to_numpy(model.parameters()[0].data).copy()
    opt.step()
    assert not np.array_equal(backend.to_numpy(model.parameters()[0].data), w0)
    assert opt.flat_data.size == model.count_params()


def test_rebound_grad_is_copied_back_into_the_flat_buffer(backend):
    params = make_params(backend)
    opt = SGD(params, lr=0.5)
    opt.zero_grad()
    before = host(backend, params)
    params[1].grad = backend.asarray(np.array([1.0, -1.0]))  # someone replaced the array instead of writing into it
    opt.step()
    after = host(backend, params)
    np.testing.assert_allclose(after[-2:], before[-2:] - 0.5 * np.array([1.0, -1.0]))
    np.testing.assert_array_equal(after[:6], before[:6])
    assert params[1].grad.base is not None  # a view again


# -- the seeds' hand formulas, 3 steps ------------------------------------------------------------
GRAD_SEEDS = (11, 12, 13)


def run_ours(backend, cls, kw, steps=3):
    params = make_params(backend)
    opt = cls(params, **kw)
    for s in range(steps):
        set_grads(backend, params, GRAD_SEEDS[s])
        opt.step()
    return host(backend, params)


def hand_run(update, steps=3):
    """Apply a hand-written update rule to the same start point and gradient sequence."""
    be = gpunn.get_backend()
    params = make_params(be)
    theta = host(be, params)
    state: dict = {}
    for s in range(steps):
        rng = np.random.default_rng(GRAD_SEEDS[s])
        g = np.concatenate([2.0 * theta[:6] + rng.standard_normal((3, 2)).ravel(),
                            2.0 * theta[6:] + rng.standard_normal(2)])
        theta = update(theta, g, state, s + 1)
    return theta


def test_sgd_momentum_matches_seeds_notation(backend):
    lr, beta = 0.1, 0.9

    def seeds(theta, g, st, t):  # m = beta*m + lr*g; theta -= m
        st["m"] = beta * st.get("m", 0.0) + lr * g
        return theta - st["m"]

    np.testing.assert_allclose(run_ours(backend, SGD, {"lr": lr, "momentum": beta}), hand_run(seeds),
                               rtol=1e-12, atol=1e-12)


def test_sgd_nesterov_matches_lookahead_form(backend):
    lr, beta = 0.1, 0.9

    def nesterov(theta, g, st, t):  # PyTorch's form: b = beta*b + g; theta -= lr*(g + beta*b)
        st["b"] = beta * st.get("b", 0.0) + g
        return theta - lr * (g + beta * st["b"])

    np.testing.assert_allclose(run_ours(backend, SGD, {"lr": lr, "momentum": beta, "nesterov": True}),
                               hand_run(nesterov), rtol=1e-12, atol=1e-12)


def test_adagrad_matches_seeds_formula(backend):
    lr, eps = 0.1, 1e-10

    def seeds(theta, g, st, t):  # s += g^2; theta -= lr*g/(sqrt(s)+eps)
        st["s"] = st.get("s", 0.0) + g * g
        return theta - lr * g / (np.sqrt(st["s"]) + eps)

    np.testing.assert_allclose(run_ours(backend, Adagrad, {"lr": lr}), hand_run(seeds), rtol=1e-12, atol=1e-12)


def test_rmsprop_matches_seeds_formula(backend):
    lr, rho, eps = 0.01, 0.9, 1e-8

    def seeds(theta, g, st, t):  # s = rho*s + (1-rho)*g^2; theta -= lr*g/(sqrt(s)+eps)
        st["s"] = rho * st.get("s", 0.0) + (1 - rho) * g * g
        return theta - lr * g / (np.sqrt(st["s"]) + eps)

    np.testing.assert_allclose(run_ours(backend, RMSprop, {"lr": lr, "rho": rho, "eps": eps}), hand_run(seeds),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_paper_formula(backend, decoupled):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1

    def paper(theta, g, st, t):  # m_hat = m/(1-b1^t), v_hat = v/(1-b2^t); theta -= lr*m_hat/(sqrt(v_hat)+eps)
        if decoupled:
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = st["m"] / (1 - b1 ** t), st["v"] / (1 - b2 ** t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    cls = AdamW if decoupled else Adam
    np.testing.assert_allclose(run_ours(backend, cls, {"lr": lr, "weight_decay": wd}), hand_run(paper),
                               rtol=1e-12, atol=1e-12)


def test_coupled_weight_decay_leaves_grad_untouched(backend):
    params = make_params(backend)
    opt = SGD(params, lr=0.1, weight_decay=0.5)
    set_grads(backend, params, 3)
    g = backend.to_numpy(opt.flat_grad).copy()
    theta = host(backend, params)
    opt.step()
    np.testing.assert_array_equal(backend.to_numpy(opt.flat_grad), g)
    np.testing.assert_allclose(host(backend, params), theta - 0.1 * (g + 0.5 * theta), rtol=1e-12)


# -- state --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", ALL, ids=IDS)
def test_state_dict_round_trip_continues_bit_identically(backend, cls, kw):
    def run(n_steps, params, opt, start):
        for s in range(start, start + n_steps):
            set_grads(backend, params, 100 + s)
            opt.step()

    params_a = make_params(backend, dtype=np.float32)
    opt_a = cls(params_a, **kw)
    run(6, params_a, opt_a, 0)
    expected = host(backend, params_a)

    params_b = make_params(backend, dtype=np.float32)
    opt_b = cls(params_b, **kw)
    run(3, params_b, opt_b, 0)
    saved_params = [backend.to_numpy(p.data).copy() for p in params_b]
    saved = opt_b.state_dict()
    assert saved["step"] == 3
    assert all(isinstance(v, np.ndarray) for v in saved["state"].values())

    params_c = make_params(backend, dtype=np.float32, seed=99)  # different values, restored below
    for p, v in zip(params_c, saved_params):
        p.data[...] = backend.asarray(v)
    opt_c = cls(params_c, **{**kw, "lr": 0.123})  # lr comes back from the state too
    opt_c.load_state_dict(saved)
    assert opt_c.lr == kw["lr"]
    run(3, params_c, opt_c, 3)
    np.testing.assert_array_equal(host(backend, params_c), expected)


def test_load_state_dict_rejects_mismatches(backend):
    opt = Adam(make_params(backend), lr=0.01)
    state = opt.state_dict()
    bad = {**state, "state": {**state["state"], "exp_avg": np.zeros(3)}}
    with pytest.raises(ValueError, match=r"state\['exp_avg'\].*\(8,\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="saved by 'Adam', not 'SGD'"):
        SGD(make_params(backend), lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(KeyError, match="missing keys"):
        opt.load_state_dict({"step": 1})


# -- freezing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", ALL, ids=IDS)
def test_frozen_parameters_stay_unchanged(backend, cls, kw):
    params = make_params(backend)
    params[0].trainable = False
    frozen = backend.to_numpy(params[0].data).copy()
    live = backend.to_numpy(params[1].data).copy()
    opt = cls(params, **kw)
    for s in range(3):
        set_grads(backend, params, s)
        opt.step()
    np.testing.assert_array_equal(backend.to_numpy(params[0].data), frozen)
    assert not np.array_equal(backend.to_numpy(params[1].data), live)
    assert opt.flat_data.size == 2


def test_frozen_layer_in_model(backend):
    from gpunn import Sequential
    from gpunn.layers import Dense
    model = Sequential([Dense(3), Dense(1)])
    x = backend.asarray(np.random.default_rng(1).standard_normal((4, 2)))
    model.forward(x)
    layer = model.layers[0]
    layer.trainable = False
    before = [backend.to_numpy(p.data).copy() for p in layer.parameters()]
    opt = SGD(model.parameters(), lr=0.1)
    y = model.forward(x, training=True)
    model.backward(backend.asarray(np.ones_like(backend.to_numpy(y))))
    opt.step()
    for p, b in zip(layer.parameters(), before):
        np.testing.assert_array_equal(backend.to_numpy(p.data), b)


# -- clipping and constraints -------------------------------------------------------------------
def test_clip_grad_norm_method_and_function_agree(backend):
    params = make_params(backend)
    set_grads(backend, params, 5)
    g = np.concatenate([backend.to_numpy(p.grad).ravel() for p in params])
    norm = float(np.linalg.norm(g))
    opt = SGD(params, lr=0.1)
    assert opt.clip_grad_norm(1.0) == pytest.approx(norm)
    clipped = backend.to_numpy(opt.flat_grad).copy()
    np.testing.assert_allclose(clipped, g * (1.0 / (norm + 1e-6)), rtol=1e-12)
    assert np.linalg.norm(clipped) <= 1.0
    # the function over the parameter list: already within the norm, so nothing changes
    assert clip_grad_norm(params, 10.0) == pytest.approx(np.linalg.norm(clipped))
    np.testing.assert_array_equal(backend.to_numpy(opt.flat_grad), clipped)


def test_clip_grad_value_and_clipvalue_setting(backend):
    params = make_params(backend)
    set_grads(backend, params, 5)
    g = np.concatenate([backend.to_numpy(p.grad).ravel() for p in params])
    clip_grad_value(params, 0.5)
    got = np.concatenate([backend.to_numpy(p.grad).ravel() for p in params])
    np.testing.assert_array_equal(got, np.clip(g, -0.5, 0.5))
    params2 = make_params(backend)
    opt = SGD(params2, lr=1.0, clipvalue=0.5)
    set_grads(backend, params2, 5)
    theta = host(backend, params2)
    opt.step()
    np.testing.assert_allclose(host(backend, params2), theta - np.clip(g, -0.5, 0.5), rtol=1e-12)


def test_constraints_applied_after_step(backend):
    params = make_params(backend)
    calls = []

    def max_norm_cols(w):  # a MaxNorm-like in-place projection of the columns onto norm <= 1
        calls.append(1)
        norms = np.sqrt((backend.to_numpy(w) ** 2).sum(axis=0, keepdims=True))
        w *= backend.asarray(np.minimum(1.0, 1.0 / np.maximum(norms, 1e-12)))

    opt = SGD(params, lr=0.1, constraints=[(params[0], max_norm_cols)])
    set_grads(backend, params, 1)
    opt.step()
    assert calls == [1]
    assert np.all(np.linalg.norm(backend.to_numpy(params[0].data), axis=0) <= 1.0 + 1e-12)
    with pytest.raises(TypeError, match=r"'constraints\[0\]'"):
        SGD(params, lr=0.1, constraints=[max_norm_cols])


# -- registry -----------------------------------------------------------------------------------
def test_get_optimizer_by_name(backend):
    params = make_params(backend)
    for name, cls in [("sgd", SGD), ("Adam", Adam), ("adamw", AdamW), ("nadam", Nadam), ("rmsprop", RMSprop),
                      ("adagrad", Adagrad), ("adadelta", Adadelta)]:
        opt = get_optimizer(name, params, lr=0.01)
        assert type(opt) is cls and opt.lr == 0.01
    with pytest.raises(ValueError, match="argument 'name' must be one of"):
        get_optimizer("adamx", params)
    inst = SGD(params, lr=0.1)
    assert get_optimizer(inst) is inst


# -- no allocation per step -----------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", ALL, ids=IDS)
def test_step_allocates_nothing_big(cls, kw):
    n = 200_000
    p = Parameter(np.zeros(n, dtype=np.float32), name="big")
    opt = cls([p], **kw)
    p.grad[...] = 0.5
    opt.step()  # the first step packs and allocates the state
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            opt.step()
            opt.zero_grad()
            p.grad[...] = 0.5
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < n * 4 // 8, f"{cls.__name__}.step allocated {peak} bytes (buffer is {n * 4})"


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_errors_name_the_argument(backend):
    params = make_params(backend)
    with pytest.raises(ValueError, match="argument 'lr' must be a finite float >= 0"):
        Adam(params, lr=-0.1)
    with pytest.raises(ValueError, match="argument 'lr'"):
        SGD(params, lr=float("nan"))
    with pytest.raises(ValueError, match=r"argument 'beta1' must be in \[0.0, 1.0\)"):
        Adam(params, beta1=1.0)
    with pytest.raises(ValueError, match="argument 'beta2'"):
        Nadam(params, beta2=-0.1)
    with pytest.raises(ValueError, match="argument 'params' is an empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="argument 'momentum'"):
        SGD(params, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="argument 'nesterov' needs argument 'momentum' > 0"):
        SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="argument 'rho'"):
        RMSprop(params, rho=1.0)
    with pytest.raises(ValueError, match="argument 'eps' must be > 0"):
        Adagrad(params, eps=0.0)
    with pytest.raises(ValueError, match="argument 'weight_decay'"):
        AdamW(params, weight_decay=-1.0)
    with pytest.raises(TypeError, match=r"argument 'params\[0\]' must be a gpunn.Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="argument 'params' must be a list of Parameter"):
        SGD(3, lr=0.1)
    opt = SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="argument 'lr'"):
        opt.lr = -1.0
    with pytest.raises(ValueError, match="argument 'max_norm' must be > 0"):
        opt.clip_grad_norm(0.0)


def test_grad_shape_mismatch_is_reported(backend):
    params = make_params(backend)
    params[1].grad = backend.asarray(np.zeros(5))
    with pytest.raises(ValueError, match=r"argument 'params\[1\]' \('b'\) has grad shape \(5,\), expected .*\(2,\)"):
        Adam(params)
    params = make_params(backend)
    opt = Adam(params)
    opt.zero_grad()
    params[0].grad = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"parameter 'w' has grad shape \(2, 3\), expected its data shape \(3, 2\)"):
        opt.step()


def test_all_frozen_and_mixed_dtypes_are_rejected(backend):
    params = make_params(backend)
    for p in params:
        p.trainable = False
    with pytest.raises(ValueError, match="no trainable parameters"):
        SGD(params, lr=0.1).step()
    mixed = make_params(backend)
    mixed[1] = Parameter(backend.asarray(np.zeros(2, dtype=np.float32)), name="b32")
    with pytest.raises(TypeError, match="must share one dtype"):
        SGD(mixed, lr=0.1).step()
