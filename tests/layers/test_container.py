"""Chain (and so Sequential) with a gpunn.Input first, Keras-style: the input shape becomes the
first layer's declared shape; an Input anywhere else, or a layer output, is refused."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.layers import Chain, Dense, ReLU


def test_an_input_first_declares_the_shape():
    model = gpunn.Sequential([gpunn.Input(shape=(4,)), Dense(3), ReLU(), Dense(2)])
    assert model.input_shape == (4,) and len(model) == 3
    assert model.layers[0]._declared_shape == (4,)
    model.summary(print_fn=None)  # builds from the declared shape
    assert model.built and model.output_shape == (2,)
    with pytest.raises(ValueError, match=r"input_shape=\(4,\) was declared"):
        model.forward(np.ones((2, 5), np.float32))


def test_add_an_input_then_layers():
    chain = Chain()
    chain.add(gpunn.Input((3,)))
    chain.add(Dense(2))
    assert chain.forward(np.ones((2, 3), np.float32)).shape == (2, 2)


def test_input_must_come_first_and_once():
    with pytest.raises(ValueError, match="must come first and once"):
        Chain([Dense(2), gpunn.Input((3,))])
    with pytest.raises(ValueError, match="must come first and once"):
        Chain([gpunn.Input((3,)), gpunn.Input((3,))])


def test_a_conflicting_declared_shape_is_refused():
    with pytest.raises(ValueError, match=r"declares input_shape=\(5,\), but the gpunn.Input before it has "
                                         r"shape \(3,\)"):
        Chain([gpunn.Input((3,)), Dense(2, input_shape=(5,))])


def test_a_layer_output_is_not_a_layer():
    h = Dense(2)(gpunn.Input((3,)))
    with pytest.raises(TypeError, match="a layer's output; a chain takes layers"):
        Chain([h])
    with pytest.raises(TypeError, match="argument 'layer' must be a gpunn Layer, got int"):
        Chain([3])
