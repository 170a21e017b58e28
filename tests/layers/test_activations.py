"""Activation zoo: float64 gradchecks, values against hand formulas, stability at |x| = 1e4, the
activation-string registry, Keras's Activation("relu"), output_activation, and bad inputs."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import gpunn
from gpunn.layers import (ELU, GELU, SELU, CReLU, Dense, LeakyReLU, LogSoftmax, Maxout, PReLU, ReLU6, Sigmoid, SiLU,
                          Softmax, Softplus, Softsign, Swish, Tanh, get_activation)
from gpunn.layers import Activation, Chain, Conv2D, Flatten, Layer, WeightNorm, output_activation
from gpunn.layers.activations import ReLU
from gpunn.testing import gradcheck


def _x(*shape, seed=0, scale=1.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    # keep every point at least 1e-3 away from the kinks at 0 (and 6 for ReLU6)
    x[np.abs(x) < 1e-3] = 0.5
    x[np.abs(x - 6) < 1e-3] = 5.5
    return x


_erf = np.vectorize(math.erf)

# (layer factory, reference forward in float64)
REFERENCES = {
    "leaky_relu": (lambda: LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "elu": (lambda: ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(np.minimum(x, 0)) - 1))),
    "selu": (SELU, lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0)))),
    "relu6": (ReLU6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    "softplus": (Softplus, lambda x: np.log1p(np.exp(x))),
    "softsign": (Softsign, lambda x: x / (1 + np.abs(x))),
    "gelu": (GELU, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu_tanh": (lambda: GELU("tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "silu": (SiLU, lambda x: x / (1 + np.exp(-x))),
    "log_softmax": (LogSoftmax, lambda x: x - np.log(np.exp(x).sum(axis=1, keepdims=True))),
    "crelu": (CReLU, lambda x: np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_activation_gradcheck(backend, name, shape):
    make, _ = REFERENCES[name]
    assert gradcheck(make(), _x(*shape, scale=3.0))


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_activation_matches_reference(backend, name):
    make, ref = REFERENCES[name]
    x = _x(5, 7, seed=1, scale=4.0)
    y = backend.to_numpy(make().to_dtype(np.float64).forward(x))  # float64 data alone would be cast to float32
    np.testing.assert_allclose(y, ref(x), rtol=1e-12, atol=1e-14)


def test_gelu_matches_erf_over_a_wide_range(backend):
    # covers both branches of the erfc evaluation (|x|/sqrt2 below and above 2) and the far tail
    x = np.linspace(-12, 12, 2401).reshape(1, -1)
    y = backend.to_numpy(GELU().to_dtype(np.float64).forward(x))
    ref = 0.5 * x * np.vectorize(math.erfc)(-x / math.sqrt(2))
    np.testing.assert_allclose(y, ref, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2)])
def test_prelu_gradcheck_and_slope_shape(backend, shared, shape):
    layer = PReLU(shared=shared)
    assert gradcheck(layer, _x(*shape))
    assert layer.params["alpha"].shape == ((1,) if shared else (3,))
    np.testing.assert_allclose(backend.to_numpy(layer.params["alpha"].data), 0.25)


def test_prelu_learns_its_slope_by_backprop(backend):
    # target: leaky relu with slope 0.1; plain SGD on MSE drives alpha from 0.25 to 0.1
    layer = PReLU()
    x = -np.abs(_x(64, 2, seed=4))
    target = 0.1 * x
    for _ in range(200):
        layer.zero_grad()
        y = layer.forward(x, training=True)
        layer.backward(backend.asarray(2 * (backend.to_numpy(y) - target) / x.size))
        p = layer.params["alpha"]
        p.data -= 0.5 * p.grad
    np.testing.assert_allclose(backend.to_numpy(layer.params["alpha"].data), 0.1, atol=1e-4)


@pytest.mark.parametrize("pieces", [1, 2, 3])
def test_maxout_gradcheck_and_is_max_of_pieces(backend, pieces):
    layer = Maxout(3, pieces=pieces)
    x = _x(4, 5)
    assert gradcheck(layer, x)
    w = backend.to_numpy(layer.params["weight"].data).reshape(5, 3, pieces)
    b = backend.to_numpy(layer.params["bias"].data).reshape(3, pieces)
    ref = (np.einsum("nf,fuk->nuk", x, w) + b).max(axis=2)
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x)), ref, rtol=1e-12)
    assert layer.output_shape == (3,)


def test_crelu_doubles_channels(backend):
    layer = CReLU()
    y = layer.forward(_x(2, 3, 4, 4).astype(np.float32))
    assert y.shape == (2, 6, 4, 4)
    assert layer.output_shape == (6, 4, 4)


def test_swish_is_silu():
    assert Swish is SiLU


@pytest.mark.parametrize("layer", [Sigmoid(), Tanh(), Softplus(), Softsign(), SiLU(), GELU(), GELU("tanh"), ELU(),
                                   SELU(), LeakyReLU(), ReLU6(), CReLU(), LogSoftmax(), Softmax(), PReLU()],
                         ids=lambda l: f"{type(l).__name__}-{getattr(l, 'approximate', '')}")
def test_stable_at_1e4_in_float32(backend, layer):
    # RuntimeWarning is an error in this test config, so any overflow fails the test outright
    x = np.array([[1e4, -1e4, 0.5, -0.5], [-1e4, 1e4, 3.0, -3.0]], dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(backend.asarray(np.ones(y.shape, np.float32)))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert np.isfinite(backend.to_numpy(y)).all()
    assert np.isfinite(backend.to_numpy(dx)).all()


def test_saturating_values_at_1e4(backend):
    x = np.array([[1e4, -1e4]], dtype=np.float32)
    np.testing.assert_array_equal(backend.to_numpy(Sigmoid().forward(x)), [[1.0, 0.0]])
    np.testing.assert_array_equal(backend.to_numpy(Softplus().forward(x)), [[1e4, 0.0]])
    np.testing.assert_array_equal(backend.to_numpy(SiLU().forward(x)), [[1e4, -0.0]])
    np.testing.assert_array_equal(backend.to_numpy(GELU().forward(x)), [[1e4, -0.0]])
    np.testing.assert_allclose(backend.to_numpy(ELU().forward(x)), [[1e4, -1.0]])
    sp = Softplus()
    sp.forward(x)
    np.testing.assert_array_equal(backend.to_numpy(sp.backward(backend.asarray(np.ones((1, 2), np.float32)))),
                                  [[1.0, 0.0]])
    ls = LogSoftmax()
    np.testing.assert_allclose(backend.to_numpy(ls.forward(x)), [[0.0, -2e4]])


@pytest.mark.parametrize("name, cls", [
    ("leaky_relu", LeakyReLU), ("prelu", PReLU), ("elu", ELU), ("selu", SELU), ("relu6", ReLU6), ("crelu", CReLU),
    ("softplus", Softplus), ("softsign", Softsign), ("gelu", GELU), ("silu", SiLU), ("swish", SiLU),
    ("log_softmax", LogSoftmax), ("relu", ReLU), ("sigmoid", Sigmoid), ("tanh", Tanh), ("softmax", Softmax),
])
def test_activation_strings(name, cls):
    assert type(get_activation(name)) is cls
    assert type(get_activation(name.upper())) is cls
    assert get_activation("gelu_tanh").approximate == "tanh"


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "selu", "softplus", "gelu", "silu", "prelu"])
def test_activation_string_on_dense_gradchecks(backend, name):
    assert gradcheck(Dense(3, activation=name), _x(4, 5))


def test_activation_string_on_conv2d(backend):
    layer = gpunn.layers.Conv2D(2, 3, activation="gelu")
    assert gradcheck(layer, _x(1, 2, 4, 4))


@pytest.mark.parametrize("make, words", [
    (lambda: LeakyReLU(-0.1), "argument 'alpha' must be a non-negative float"),
    (lambda: ELU(alpha=-1.0), "argument 'alpha' must be a non-negative float"),
    (lambda: LeakyReLU(float("nan")), "argument 'alpha'"),
    (lambda: GELU("erf"), "argument 'approximate' must be 'none' or 'tanh'"),
    (lambda: Maxout(0), "argument 'units' must be a positive int"),
    (lambda: Maxout(3, pieces=0), "argument 'pieces' must be a positive int"),
    (lambda: get_activation("nope"), "argument 'activation' must be None, a Layer, or one of"),
])
def test_bad_constructor_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_bad_forward_inputs():
    prelu = PReLU()
    prelu.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"must have 3 channels \(axis 1\)"):
        prelu.forward(np.ones((2, 4), np.float32))
    maxout = Maxout(2)
    maxout.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="must have 3 features"):
        maxout.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Maxout(2).forward(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="channel axis"):
        CReLU().forward(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        ELU().forward(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="empty batch"):
        GELU().forward(np.ones((0, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        SiLU().backward(np.ones((2, 3), np.float32))


# -- Activation("name"), as in Keras -----------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("relu", ReLU), ("softmax", Softmax), ("sigmoid", Sigmoid), ("tanh", Tanh),
                                       ("log_softmax", LogSoftmax), ("gelu", GELU), ("swish", SiLU)])
def test_activation_by_name_builds_that_layer(backend, name, cls):
    layer = Activation(name)
    assert type(layer) is cls and layer.name == cls.__name__
    x = _x(3, 4)
    np.testing.assert_array_equal(backend.to_numpy(layer.forward(x)), backend.to_numpy(cls().forward(x)))
    assert type(Activation(activation=name)) is cls  # Keras's keyword


def test_activation_by_name_takes_name_and_input_shape(backend):
    layer = Activation("softmax", name="probs", input_shape=(5,))
    assert type(layer) is Softmax and layer.name == "probs" and layer.axis == 1
    assert layer.input_shape == (5,)
    with pytest.raises(ValueError, match=r"but input_shape=\(5,\) was declared"):
        layer.forward(np.ones((2, 6), np.float32))
    relu = ReLU()
    assert Activation(relu) is relu  # a layer passes through, as get_activation does


def test_subclasses_still_construct_with_name():
    """Activation is the base of the activations: name= on a subclass (and on the base) is a name."""
    assert ReLU(name="x").name == "x" and type(ReLU(name="x")) is ReLU
    assert Softmax(axis=-1, name="s").name == "s"
    assert LeakyReLU(0.2, name="leaky").alpha == 0.2
    base = Activation(name="x")
    assert type(base) is Activation and base.name == "x"

    class Cube(Activation):
        def _forward(self, x):
            return x ** 3, x

        def _backward(self, dy, x):
            return 3 * x * x * dy

    cube = Cube(name="cube")
    assert type(cube) is Cube and cube.name == "cube"
    assert gradcheck(cube, _x(2, 3))
    assert list(inspect.signature(Softmax).parameters) == ["axis", "name"]  # what gpunn.io checks configs against


@pytest.mark.parametrize("args, kwargs, err, words", [
    (("nope",), {}, ValueError, r"^Activation: argument 'activation' must be a Layer or one of \[.*\], got 'nope'; "
                                r"to subclass Activation, call super\(\).__init__\(name=...\)"),
    ((3,), {}, ValueError, "argument 'activation' must be a Layer or one of"),
    (("relu",), {"name": 3}, TypeError, r"^Activation: argument 'name' must be a str, got int"),
    ((ReLU(),), {"name": "r"}, ValueError, "arguments 'name' and 'input_shape' apply to a named activation"),
    (("relu",), {"alpha": 0.1}, TypeError, "unexpected keyword argument 'alpha'"),
])
def test_activation_by_name_bad_arguments(args, kwargs, err, words):
    with pytest.raises(err, match=words):
        Activation(*args, **kwargs)


# -- output_activation ----------------------------------------------------------------------------
def test_output_activation_names_what_the_output_ends_in():
    assert output_activation(Softmax()) == "softmax"
    assert output_activation(LogSoftmax()) == "log_softmax"
    assert output_activation(Sigmoid()) == "sigmoid"
    assert output_activation(Activation("softmax")) == "softmax"
    assert output_activation(Dense(10, activation="softmax")) == "softmax"
    assert output_activation(Dense(1, activation="sigmoid")) == "sigmoid"
    assert output_activation(Conv2D(4, 3, activation="sigmoid")) == "sigmoid"
    assert output_activation(Dense(10)) is None  # logits
    assert output_activation(Dense(10, activation="relu")) is None
    assert output_activation(ReLU()) is None and output_activation(Tanh()) is None
    assert output_activation(WeightNorm(Dense(3, activation="softmax"))) == "softmax"
    assert output_activation(Chain([Dense(5), Dense(3, activation="softmax")])) == "softmax"
    assert output_activation(Chain([Dense(5), Chain([Dense(3), LogSoftmax()])])) == "log_softmax"
    assert output_activation(Chain([Dense(3, activation="softmax"), Flatten()])) is None  # only the last layer
    assert output_activation(Chain()) is None
    assert output_activation(object()) is None


def test_output_activation_of_a_sequential():
    model = gpunn.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")])
    assert output_activation(model) == "softmax"
    model.pop()
    model.add(Dense(3))
    assert output_activation(model) is None


def test_a_custom_layer_declares_its_output():

    class Normalize(Layer):
        """Rows scaled to sum to 1: probabilities without a Softmax."""
        output_activation = "softmax"

    class Other(Layer):
        output_activation = "relu"  # not one the losses care about: ignored

    assert output_activation(Normalize()) == "softmax"
    assert output_activation(Other()) is None
