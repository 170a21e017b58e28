"""Core layers: float64 gradient checks over shapes, strides, paddings and dilations; bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpunn
from gpunn import Sequential
from gpunn.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax, Tanh
from gpunn.testing import gradcheck


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4)])
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradcheck(backend, shape, activation):
    assert gradcheck(Dense(4, activation=activation), _x(*shape))


@given(n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(4, 7), w=st.integers(4, 7),
       k=st.sampled_from([1, 2, 3, (2, 3)]), stride=st.sampled_from([1, 2, (2, 1), 3]),
       padding=st.sampled_from(["valid", 0, 1, 2, (1, 0)]), dilation=st.sampled_from([1, 2]))
def test_conv2d_gradcheck(backend, n, c, f, h, w, k, stride, padding, dilation):
    layer = Conv2D(f, k, strides=stride, padding=padding, dilation=dilation)
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (0, 0) if padding == "valid" else ((padding, padding) if isinstance(padding, int) else padding)
    if h + 2 * ph < dilation * (kh - 1) + 1 or w + 2 * pw < dilation * (kw - 1) + 1:
        return
    assert gradcheck(layer, _x(n, c, h, w))


def test_conv2d_same_padding_keeps_size_and_grads(backend):
    layer = Conv2D(2, 3, padding="same", activation="relu")
    x = _x(2, 3, 5, 6)
    assert layer.forward(x).shape == (2, 2, 5, 6)
    assert gradcheck(layer, x)


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), (3, 2, 0), (2, 1, 1), (3, 3, 0)])
def test_pool_gradcheck(backend, cls, k, s, p):
    # distinct values keep max-pool away from ties, where the derivative is undefined
    x = np.random.default_rng(3).permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0
    assert gradcheck(cls(k, strides=s, padding=p), x)


@pytest.mark.parametrize("layer", [ReLU(), Sigmoid(), Tanh(), Softmax(), Softmax(axis=-1), Flatten()],
                         ids=lambda l: type(l).__name__)
def test_parameterless_layers_gradcheck(backend, layer):
    x = _x(3, 4, 5) + 0.05  # keep ReLU away from its kink at 0
    assert gradcheck(layer, x)


def test_dropout_gradcheck_and_scaling(backend):
    assert gradcheck(Dropout(0.4), _x(4, 6))
    x = np.ones((2000, 50), np.float32)
    y = backend.to_numpy(Dropout(0.25).forward(x, training=True))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(backend.to_numpy(Dropout(0.25).forward(x, training=False)), x)


def test_sequential_gradcheck(backend):
    model = Sequential([Conv2D(3, 3, padding=1, activation="tanh"), MaxPool2D(2), Conv2D(2, 2),
                        AvgPool2D(2, strides=1), Flatten(), Dense(5, activation="sigmoid"), Dropout(0.2), Dense(3)])
    assert gradcheck(model, _x(2, 2, 8, 8))
    assert model.output_shape == (3,)


def test_gradcheck_catches_a_wrong_backward():
    class BrokenTanh(Tanh):
        def _backward(self, dy, y):
            return dy * (1 - y)  # wrong derivative

    with pytest.raises(AssertionError, match="input gradient"):
        gradcheck(BrokenTanh(), _x(3, 4))


def test_backward_accumulates_param_grads():
    layer = Dense(3)
    x = _x(4, 5).astype(np.float32)
    layer.forward(x)
    layer.backward(np.ones((4, 3), np.float32))
    once = layer.params["weight"].grad.copy()
    layer.forward(x)
    layer.backward(np.ones((4, 3), np.float32))
    np.testing.assert_allclose(layer.params["weight"].grad, 2 * once, rtol=1e-6)


def test_parameter_shapes_and_names():
    dense = Dense(7, input_shape=(5,))
    dense.forward(np.zeros((2, 5), np.float32))
    assert dense.params["weight"].shape == (5, 7) and dense.params["bias"].shape == (7,)
    conv = Conv2D(8, (3, 2))
    conv.forward(np.zeros((1, 4, 6, 6), np.float32))
    assert conv.params["weight"].shape == (8, 4, 3, 2) and conv.params["bias"].shape == (8,)
    assert isinstance(conv.params["weight"], gpunn.Parameter)
    assert conv.params["weight"].data.dtype == np.float32
    model = Sequential([Dense(3), Dense(2)])
    model.forward(np.zeros((1, 4), np.float32))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_state_dict_round_trip_in_place():
    a, b = Sequential([Conv2D(2, 3), Flatten(), Dense(3)]), Sequential([Conv2D(2, 3), Flatten(), Dense(3)])
    x = _x(2, 1, 5, 5).astype(np.float32)
    a.forward(x)
    b.forward(x)
    weight_array = b.layers[0].params["weight"].data
    b.load_state_dict(a.state_dict())
    assert b.layers[0].params["weight"].data is weight_array  # written in place
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


def test_load_state_dict_validates_before_writing():
    model = Sequential([Dense(3), Dense(2)])
    model.forward(np.zeros((1, 4), np.float32))
    before = model.state_dict()
    bad = dict(before)
    bad["1.weight"] = np.zeros((9, 9), np.float32)
    bad["0.weight"] = np.ones_like(before["0.weight"])
    with pytest.raises(ValueError, match=r"state\['1.weight'\]' must have shape \(3, 2\)"):
        model.load_state_dict(bad)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before["0.weight"])
    with pytest.raises(KeyError, match="missing"):
        model.load_state_dict({"0.weight": before["0.weight"]})


# -- bad inputs ----------------------------------------------------------------------------------
LAYERS_4D = [lambda: Conv2D(2, 3), lambda: MaxPool2D(2), lambda: AvgPool2D(2)]
ALL_LAYERS = [lambda: Dense(3), *LAYERS_4D, lambda: Flatten(), lambda: Dropout(0.5), lambda: ReLU(),
              lambda: Sigmoid(), lambda: Tanh(), lambda: Softmax(), lambda: Sequential([Dense(2)])]


@pytest.mark.parametrize("make", LAYERS_4D)
def test_4d_layers_reject_wrong_rank(make):
    with pytest.raises(ValueError, match=r"argument 'x' must have 4 dimensions \(N, C, H, W\)"):
        make().forward(np.zeros((2, 3, 5), np.float32))


def test_dense_rejects_rank_1():
    with pytest.raises(ValueError, match="argument 'x' must have at least 2 dimensions"):
        Dense(3).forward(np.zeros(5, np.float32))


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_layers_reject_integer_dtype(make):
    with pytest.raises(TypeError, match="argument 'x' must be a floating-point array"):
        make().forward(np.zeros((2, 3, 6, 6), np.int64))


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_layers_reject_empty_batch(make):
    with pytest.raises(ValueError, match="argument 'x' has an empty batch"):
        make().forward(np.zeros((0, 3, 6, 6), np.float32))


def test_layers_reject_non_arrays():
    with pytest.raises(TypeError, match="argument 'x' must be an array"):
        Dense(3).forward("not an array")


def test_channel_mismatch_after_build():
    conv = Conv2D(2, 3)
    conv.forward(np.zeros((1, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"must have 3 channels \(axis 1\) as built"):
        conv.forward(np.zeros((1, 4, 6, 6), np.float32))
    dense = Dense(2)
    dense.forward(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="must have 5 features on its last axis as built"):
        dense.forward(np.zeros((1, 6), np.float32))


def test_input_smaller_than_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Conv2D(2, 5).forward(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the pool window"):
        MaxPool2D(4).forward(np.zeros((1, 1, 3, 3), np.float32))


@pytest.mark.parametrize("make, words", [
    (lambda: Dense(0), "argument 'units' must be a positive int"),
    (lambda: Dense(2.5), "argument 'units' must be a positive int"),
    (lambda: Conv2D(0, 3), "argument 'filters' must be a positive int"),
    (lambda: Conv2D(2, 0), "argument 'kernel_size' must be >= 1"),
    (lambda: Conv2D(2, (3, 3, 3)), "argument 'kernel_size' must be an int or a pair"),
    (lambda: Conv2D(2, 3, strides=0), "argument 'strides' must be >= 1"),
    (lambda: Conv2D(2, 3, padding=-1), "argument 'padding' must be >= 0"),
    (lambda: Conv2D(2, 3, padding="full"), "argument 'padding' must be 'valid', 'same'"),
    (lambda: Conv2D(2, 3, strides=2, padding="same"), "padding='same' needs strides=1"),
    (lambda: Conv2D(2, 2, padding="same"), "odd effective kernel"),
    (lambda: MaxPool2D(2, padding=2), "argument 'padding' must be at most half"),
    (lambda: Dropout(1.0), "argument 'rate' must be a float in \\[0, 1\\)"),
    (lambda: Dropout(-0.1), "argument 'rate'"),
    (lambda: Dense(3, activation="nope"), "argument 'activation' must be None"),
    (lambda: Dense(3, kernel_initializer="nope"), "argument 'spec' must be a callable"),
    (lambda: Sequential([object()]), "argument 'layer' must be a gpunn Layer"),
])
def test_constructor_arguments_are_validated(make, words):
    with pytest.raises((ValueError, TypeError), match=words):
        layer = make()
        layer.forward(np.zeros((1, 3, 6, 6), np.float32))  # lazy checks happen on build


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="called before forward"):
        Dense(3).backward(np.zeros((1, 3), np.float32))


def test_empty_sequential_is_a_clear_error():
    with pytest.raises(RuntimeError, match="has no layers"):
        Sequential().forward(np.zeros((1, 3), np.float32))


# -- GlobalAveragePooling2D (channels_last: tests/layers/test_data_format.py) ---------------------
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 5), (3, 2, 1, 7)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_gradcheck(backend, shape, keepdims):
    from gpunn.layers import GlobalAveragePooling2D

    layer = GlobalAveragePooling2D(keepdims=keepdims)
    assert gradcheck(layer, _x(*shape))
    n, c = shape[:2]
    assert layer.output_shape == ((c, 1, 1) if keepdims else (c,))
    y = backend.to_numpy(layer.forward(_x(*shape)))
    np.testing.assert_allclose(y.reshape(n, c), _x(*shape).mean(axis=(2, 3)), rtol=1e-12)


def test_sublayers_lists_each_layer_once_parents_first() -> None:
    from gpunn.layers import Chain, Dense, ReLU

    shared = Dense(3)
    inner = Chain([shared, ReLU()])
    outer = Chain([inner, shared])  # the same Dense twice: listed once
    layers = outer.sublayers()
    assert layers[0] is outer and layers[1] is inner
    assert [id(x) for x in layers].count(id(shared)) == 1 and len(layers) == 4
