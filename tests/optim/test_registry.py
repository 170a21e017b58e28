"""get_optimizer: names, Keras's defaults with keras_defaults=True (and explicit settings over
them), unbound optimizers by name, and the updates that match Keras 3's step for step (SGD,
Adadelta, Nadam against NumPy transcriptions of keras/src/optimizers/*.py update_step)."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import Parameter
from gpunn.optim import (OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, Optimizer, RMSprop, get_optimizer,
                         register_optimizer)
from gpunn.optim.registry import KERAS_DEFAULTS

# Keras 3's documented defaults per name, in gpunn's attribute names (keras/src/optimizers/*.py)
KERAS = {
    "sgd": (SGD, {"lr": 0.01, "momentum": 0.0, "nesterov": False}),
    "rmsprop": (RMSprop, {"lr": 1e-3, "rho": 0.9, "momentum": 0.0, "eps": 1e-7, "centered": False}),
    "adam": (Adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "amsgrad": False}),
    "adamw": (AdamW, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.004}),
    "adagrad": (Adagrad, {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7}),
    "adadelta": (Adadelta, {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}),
    "nadam": (Nadam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "momentum_decay": 1.0}),
}
# the classes' own (PyTorch) defaults, unchanged
TORCH = {
    "sgd": {"lr": 0.01, "momentum": 0.0}, "rmsprop": {"lr": 0.01, "rho": 0.99, "eps": 1e-8},
    "adam": {"lr": 1e-3, "eps": 1e-8}, "adamw": {"lr": 1e-3, "weight_decay": 0.01},
    "adagrad": {"lr": 0.01, "initial_accumulator_value": 0.0, "eps": 1e-10},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, "nadam": {"lr": 2e-3, "momentum_decay": 4e-3},
}


def make_params(backend, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(backend.asarray(rng.standard_normal((3, 2))), name="w"),
            Parameter(backend.asarray(rng.standard_normal(2)), name="b")]


def settings(opt, keys):
    return {k: getattr(opt, k) for k in keys}


def test_every_name_has_keras_defaults():
    assert set(KERAS_DEFAULTS) == set(OPTIMIZERS) == set(KERAS)


@pytest.mark.parametrize("name", sorted(KERAS))
def test_keras_defaults_by_name(backend, name):
    cls, expected = KERAS[name]
    opt = get_optimizer(name, make_params(backend), keras_defaults=True)
    assert type(opt) is cls
    assert settings(opt, expected) == expected


@pytest.mark.parametrize("name", sorted(TORCH))
def test_the_classes_keep_their_pytorch_defaults(backend, name):
    expected = TORCH[name]
    assert settings(get_optimizer(name, make_params(backend)), expected) == expected
    assert settings(OPTIMIZERS[name](make_params(backend)), expected) == expected


def test_explicit_settings_override_keras_defaults(backend):
    opt = get_optimizer("rmsprop", make_params(backend), keras_defaults=True, lr=0.05, momentum=0.5)
    assert (opt.lr, opt.momentum, opt.rho, opt.eps) == (0.05, 0.5, 0.9, 1e-7)
    # Keras's name for the learning rate replaces the default lr too
    opt = get_optimizer("adam", make_params(backend), keras_defaults=True, learning_rate=0.02)
    assert (opt.lr, opt.eps) == (0.02, 1e-7)
    with pytest.raises(ValueError, match="arguments 'lr' and 'learning_rate' are the same setting"):
        get_optimizer("adam", make_params(backend), lr=0.1, learning_rate=0.2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'beta_1'"):
        get_optimizer("adam", make_params(backend), keras_defaults=True, beta_1=0.8)  # gpunn's name is beta1


def test_get_optimizer_without_params_is_unbound(backend):
    opt = get_optimizer("sgd", learning_rate=0.1, keras_defaults=True)
    assert type(opt) is SGD and not opt.bound and opt.lr == 0.1
    params = make_params(backend)
    opt.bind(params)
    assert opt.bound and opt.flat_data.shape == (8,)


def test_a_registered_name_without_keras_defaults_takes_the_class_defaults(backend):
    class Sign(SGD):
        """SGD on the sign of the gradient."""

    register_optimizer("sign_sgd_test", Sign)
    try:
        opt = get_optimizer("Sign_SGD_test", make_params(backend), keras_defaults=True)
        assert type(opt) is Sign and opt.lr == 0.01
    finally:
        OPTIMIZERS.pop("sign_sgd_test")


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"^get_optimizer: argument 'keras_defaults' must be True or False, got 1"):
        get_optimizer("adam", keras_defaults=1)
    with pytest.raises(ValueError, match=r"^get_optimizer: argument 'name' must be one of"):
        get_optimizer("adamx")
    with pytest.raises(TypeError, match=r"^get_optimizer: argument 'name' must be a str or an Optimizer, got int"):
        get_optimizer(3)
    with pytest.raises(ValueError, match="got an Optimizer instance and also settings"):
        get_optimizer(SGD(), lr=0.1)
    with pytest.raises(TypeError, match=r"^register_optimizer: argument 'cls' must be an Optimizer subclass"):
        register_optimizer("x", dict)
    with pytest.raises(TypeError, match=r"^register_optimizer: argument 'name' must be a non-empty str"):
        register_optimizer("  ", SGD)
    assert isinstance(get_optimizer(SGD(), keras_defaults=True), Optimizer)  # an instance passes through


# -- the updates that are Keras's, step for step -------------------------------------------------
def keras_sgd(w, grads, lr, momentum, nesterov):
    m = np.zeros_like(w)
    for g in grads:
        if momentum:
            m = m * momentum - g * lr
            w = w + (m * momentum - g * lr if nesterov else m)
        else:
            w = w - g * lr
    return w


def keras_adadelta(w, grads, lr, rho, eps):
    acc_g, acc_d = np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        acc_g = rho * acc_g + (1 - rho) * g * g
        delta = -np.sqrt(acc_d + eps) * g / np.sqrt(acc_g + eps)
        acc_d = rho * acc_d + (1 - rho) * delta * delta
        w = w + lr * delta
    return w


def keras_nadam(w, grads, lr, b1, b2, eps):
    m, v, u_product = np.zeros_like(w), np.zeros_like(w), 1.0
    for it, g in enumerate(grads):
        u_product *= b1 * (1.0 - 0.5 * 0.96 ** (it + 1))  # _backend_update_step, before update_step
        u_t = b1 * (1.0 - 0.5 * 0.96 ** (it + 1))
        u_t_1 = b1 * (1.0 - 0.5 * 0.96 ** (it + 2))
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_t_1 * m / (1 - u_product * u_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2 ** (it + 1))
        w = w - m_hat * lr / (np.sqrt(v_hat) + eps)
    return w


GRADS = [np.random.default_rng(s).standard_normal(6) for s in range(6)]


@pytest.mark.parametrize("name, kw, reference", [
    ("sgd", {}, lambda w: keras_sgd(w, GRADS, 0.1, 0.0, False)),
    ("sgd", {"momentum": 0.9}, lambda w: keras_sgd(w, GRADS, 0.1, 0.9, False)),
    ("sgd", {"momentum": 0.9, "nesterov": True}, lambda w: keras_sgd(w, GRADS, 0.1, 0.9, True)),
    ("adadelta", {}, lambda w: keras_adadelta(w, GRADS, 0.1, 0.95, 1e-7)),
    ("nadam", {}, lambda w: keras_nadam(w, GRADS, 0.1, 0.9, 0.999, 1e-7)),
], ids=["sgd", "sgd_momentum", "sgd_nesterov", "adadelta", "nadam"])
def test_keras_defaults_reproduce_keras_updates(backend, name, kw, reference):
    w0 = np.random.default_rng(9).standard_normal(6)
    p = Parameter(backend.asarray(w0.copy()), name="w")
    opt = get_optimizer(name, [p], keras_defaults=True, learning_rate=0.1, **kw)
    for g in GRADS:
        p.grad[...] = backend.asarray(g)
        opt.step()
    np.testing.assert_allclose(backend.to_numpy(p.data), reference(w0), rtol=1e-12, atol=1e-14)


def test_keras_adam_epsilon_differs_only_in_the_first_steps(backend):
    """The documented difference: Keras adds epsilon before the bias correction. With gradients
    far above epsilon the two forms agree to ~eps / |g|."""
    w0 = np.random.default_rng(9).standard_normal(6)
    p = Parameter(backend.asarray(w0.copy()), name="w")
    opt = get_optimizer("adam", [p], keras_defaults=True, learning_rate=0.1)
    m, v, w = np.zeros(6), np.zeros(6), w0.copy()
    for t, g in enumerate(GRADS, start=1):
        p.grad[...] = backend.asarray(g)
        opt.step()
        m, v = m + (g - m) * 0.1, v + (g * g - v) * 0.001
        w = w - 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)  # Keras's update_step
    np.testing.assert_allclose(backend.to_numpy(p.data), w, rtol=1e-5)
