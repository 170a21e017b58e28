"""Optimizer base: lr / learning_rate as one setting, optimizers built without parameters and
bound later (bind, bound), the errors of an unbound one, and that a bound optimizer saves,
rebuilds and loads as before."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Parameter, Sequential
from gpunn.io.checkpoint import optimizer_config
from gpunn.layers import Dense
from gpunn.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, RMSprop

CLASSES = [SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Nadam]
# each class's documented (PyTorch) default learning rate
DEFAULT_LR = {SGD: 0.01, Adagrad: 0.01, RMSprop: 0.01, Adadelta: 1.0, Adam: 1e-3, AdamW: 1e-3, Nadam: 2e-3}
IDS = [c.__name__ for c in CLASSES]


def make_params(backend, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(backend.asarray(rng.standard_normal((3, 2))), name="w"),
            Parameter(backend.asarray(rng.standard_normal(2)), name="b")]


def set_grads(backend, params, seed):
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad[...] = backend.asarray(rng.standard_normal(p.data.shape))


def host(backend, params):
    return np.concatenate([backend.to_numpy(p.data).ravel() for p in params])


# -- lr and learning_rate -----------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_learning_rate_is_lr(backend, cls):
    params = make_params(backend)
    assert cls(params).lr == DEFAULT_LR[cls]  # the documented default when neither is given
    opt = cls(params, learning_rate=0.05)
    assert opt.lr == 0.05 and opt.learning_rate == 0.05
    opt.learning_rate = 0.02
    assert opt.lr == 0.02
    opt.lr = 0.03
    assert opt.learning_rate == 0.03
    assert opt.hyperparams()["lr"] == 0.03  # saved under one key, as before


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_learning_rate_and_lr_give_the_same_trajectory(backend, cls):
    a, b = make_params(backend), make_params(backend)
    opt_a, opt_b = cls(a, lr=0.05), cls(b, learning_rate=0.05)
    for step in range(3):
        set_grads(backend, a, step)
        set_grads(backend, b, step)
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(host(backend, a), host(backend, b))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_giving_both_names_is_an_error(cls):
    with pytest.raises(ValueError, match=rf"^{cls.__name__}: arguments 'lr' and 'learning_rate' are the same "
                                         r"setting; give one, got lr=0.1 and learning_rate=0.2"):
        cls(lr=0.1, learning_rate=0.2)


def test_bad_learning_rate_values_name_the_argument():
    with pytest.raises(ValueError, match=r"^Adam: argument 'learning_rate' must be a finite float >= 0, got -1"):
        Adam(learning_rate=-1)
    with pytest.raises(TypeError, match="argument 'learning_rate' must be a finite float >= 0, got str"):
        SGD(learning_rate="0.1")
    opt = Adam()
    with pytest.raises(ValueError, match=r"^Adam.learning_rate: argument 'learning_rate' must be a finite float"):
        opt.learning_rate = float("nan")
    assert opt.lr == 1e-3  # unchanged by the refused value


# -- building without parameters, binding later -------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_unbound_then_bound_matches_built_on_the_parameters(backend, cls):
    a, b = make_params(backend), make_params(backend)
    built = cls(a, lr=0.05)
    later = cls(learning_rate=0.05)
    assert built.bound and not later.bound
    assert later.bind(b) is later and later.bound
    for step in range(3):
        set_grads(backend, a, step)
        set_grads(backend, b, step)
        built.step()
        later.step()
    np.testing.assert_array_equal(host(backend, a), host(backend, b))


@pytest.mark.parametrize("method", ["step", "zero_grad", "state_dict", "flat_data", "clip_grad_norm"])
def test_an_unbound_optimizer_says_how_to_bind_it(method):
    opt = Adam(learning_rate=1e-3)
    with pytest.raises(RuntimeError, match=rf"^Adam\.{method}: this optimizer has no parameters yet; pass it to "
                                           r"model\.compile\(optimizer=\.\.\.\) or call bind\(model\) first"):
        attr = getattr(opt, method)
        attr(1.0) if method == "clip_grad_norm" else attr() if callable(attr) else None


def test_an_unbound_optimizer_keeps_its_settings():
    opt = RMSprop(learning_rate=0.002, rho=0.8, momentum=0.5)
    assert (opt.lr, opt.rho, opt.momentum) == (0.002, 0.8, 0.5)
    assert repr(opt).startswith("RMSprop(lr=0.002")
    opt.lr = 0.001  # schedules and callbacks may set it before binding
    assert opt.learning_rate == 0.001


def test_bind_to_a_model_collects_lazily_and_trains(backend):
    gpunn.manual_seed(0)
    model = Sequential([Dense(3, input_shape=(4,))])
    opt = SGD(learning_rate=0.1).bind(model)  # before the model is built
    model.compile(loss="mse", optimizer=opt)
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y = np.zeros((8, 3), np.float32)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first
    assert opt.backend is model.backend


def test_binding_twice(backend):
    params = make_params(backend)
    opt = Adam().bind(params)
    assert opt.bind(params) is opt  # the same parameters again: nothing to do
    with pytest.raises(ValueError, match=r"^Adam.bind: this optimizer is already bound to other parameters"):
        opt.bind(make_params(backend))
    model = Sequential([Dense(2, input_shape=(3,))])
    on_model = SGD(model, lr=0.1)  # torch-style construction binds at once
    assert on_model.bound and on_model.bind(model) is on_model
    with pytest.raises(ValueError, match="already bound to other parameters"):
        on_model.bind(Sequential([Dense(2, input_shape=(3,))]))
    with pytest.raises(ValueError, match="already bound to other parameters"):
        on_model.bind(params)
    model.build((3,))
    on_list = Adam(model.parameters())
    assert on_list.bind(model) is on_list  # the model holds exactly the parameters it was built on


def test_bind_bad_arguments(backend):
    with pytest.raises(TypeError, match=r"^SGD.bind: argument 'model_or_params' must be a model or a list of "
                                        r"Parameter, got None"):
        SGD().bind(None)
    with pytest.raises(TypeError, match=r"^SGD: argument 'model_or_params' must be a list of Parameter"):
        SGD().bind(3)
    with pytest.raises(ValueError, match="argument 'params' is an empty parameter list"):
        SGD().bind([])
    opt = SGD()
    with pytest.raises(TypeError, match=r"argument 'params\[0\]' must be a gpunn.Parameter"):
        opt.bind([np.zeros(3)])
    assert not opt.bound  # a refused bind leaves it unbound


def test_a_number_where_the_parameters_go_suggests_learning_rate():
    """Keras writes Adam(0.001); the first argument here is the parameters, as in PyTorch."""
    with pytest.raises(TypeError, match=r"^Adam: argument 'params' must be a list of Parameter or a model with "
                                        r"\.parameters\(\), got float; to set the learning rate pass "
                                        r"learning_rate=0\.001"):
        Adam(0.001)


# -- saving and rebuilding a bound optimizer ----------------------------------------------------
def test_optimizer_config_rebuilds_an_optimizer_built_with_learning_rate(backend):
    model = Sequential([Dense(2, input_shape=(3,))])
    opt = Adam(learning_rate=0.01, beta2=0.99).bind(model)
    cfg = optimizer_config(opt)
    assert cfg == {"class": "Adam", "config": {"lr": 0.01, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.99,
                                               "eps": 1e-8, "amsgrad": False}}
    again = type(opt)(model, **cfg["config"])  # what TrainingMixin._rebuild_optimizer does
    assert again.hyperparams() == opt.hyperparams() and again.bound


def test_a_model_compiled_with_a_bound_optimizer_saves_and_loads(backend, tmp_path):
    gpunn.manual_seed(0)
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer=RMSprop(learning_rate=0.005, rho=0.8).bind(model))
    x = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1, 0])
    model.fit(x, y, epochs=2, batch_size=3, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    assert type(loaded.optimizer) is RMSprop
    assert loaded.optimizer.hyperparams() == model.optimizer.hyperparams()
    assert loaded.optimizer.step_count == model.optimizer.step_count
    # both continue identically
    model.fit(x, y, epochs=1, batch_size=3, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


# -- PyTorch's names for the other settings ---------------------------------------------------------
def test_rmsprop_alpha_is_rho(backend):
    a, b = make_params(backend), make_params(backend)
    torch_style, keras_style = RMSprop(a, lr=0.01, alpha=0.9), RMSprop(b, learning_rate=0.01, rho=0.9)
    assert torch_style.rho == torch_style.alpha == 0.9 and RMSprop().rho == 0.99
    for step in range(3):
        set_grads(backend, a, step)
        set_grads(backend, b, step)
        torch_style.step()
        keras_style.step()
    np.testing.assert_array_equal(host(backend, a), host(backend, b))
    torch_style.alpha = 0.8
    assert torch_style.rho == 0.8 and torch_style.hyperparams()["rho"] == 0.8
    with pytest.raises(ValueError, match=r"^RMSprop: arguments 'rho' and 'alpha' are the same setting; give one"):
        RMSprop(rho=0.9, alpha=0.9)
    with pytest.raises(ValueError, match=r"^RMSprop: argument 'alpha' must be in \[0.0, 1.0\)"):
        RMSprop(alpha=1.0)
    with pytest.raises(ValueError, match=r"^RMSprop.alpha: argument 'alpha'"):
        torch_style.alpha = -0.5


@pytest.mark.parametrize("cls", [Adam, AdamW, Nadam], ids=["Adam", "AdamW", "Nadam"])
def test_betas_is_beta1_and_beta2(cls):
    opt = cls(betas=(0.8, 0.95))
    assert (opt.beta1, opt.beta2) == (0.8, 0.95)
    assert (cls().beta1, cls().beta2) == (0.9, 0.999)
    assert cls(beta2=0.9).beta1 == 0.9
    with pytest.raises(ValueError, match=rf"^{cls.__name__}: argument 'betas' is the same setting as 'beta1' and "
                                         r"'beta2'; give one"):
        cls(betas=(0.8, 0.9), beta1=0.8)
    with pytest.raises(TypeError, match=r"argument 'betas' must be a pair \(beta1, beta2\), got 0.9"):
        cls(betas=0.9)
    with pytest.raises(ValueError, match=r"argument 'betas\[1\]' must be in \[0.0, 1.0\)"):
        cls(betas=(0.9, 1.0))
