"""Residual containers: y = block(x) + shortcut(x), both paths in backward; ResNet basic blocks."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, ReLU, Residual, basic_block, projection_shortcut
from gpunn.testing import gradcheck


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_identity_residual_adds_the_input(backend):
    block = Sequential([Dense(4, activation="tanh"), Dense(4)])
    layer = Residual(block).to_dtype(np.float64)
    x = _x(3, 4)
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x)), backend.to_numpy(block.forward(x)) + x, rtol=1e-12)
    assert gradcheck(layer, x)
    assert layer.output_shape == (4,)


def test_backward_sums_both_paths(backend):
    block = Dense(4)
    layer = Residual(block, shortcut=Dense(4, use_bias=False)).to_dtype(np.float64)
    x = _x(3, 4)
    layer.forward(x)
    dy = backend.asarray(_x(3, 4, seed=1))
    dx = backend.to_numpy(layer.backward(dy))
    w_block = backend.to_numpy(block.params["weight"].data)
    w_short = backend.to_numpy(layer.shortcut.params["weight"].data)
    np.testing.assert_allclose(dx, backend.to_numpy(dy) @ (w_block + w_short).T, rtol=1e-12)
    assert gradcheck(layer, x)


def test_identity_path_gradient_survives_a_dead_block(backend):
    # a block whose output ignores x still lets the gradient through: the point of skip connections
    layer = Residual(Dense(4, kernel_initializer="zeros"))
    x = _x(2, 4)
    layer.forward(x)
    dy = backend.asarray(_x(2, 4, seed=2))
    np.testing.assert_allclose(backend.to_numpy(layer.backward(dy)), backend.to_numpy(dy))


def test_projection_shortcut_with_strides_gradchecks(backend):
    block = Sequential([Conv2D(4, 3, strides=2, padding=1), ReLU(), Conv2D(4, 3, padding=1)])
    layer = Residual(block, shortcut=Conv2D(4, 1, strides=2))
    x = _x(2, 2, 5, 5) + 0.01
    assert layer.forward(x).shape == (2, 4, 3, 3)
    assert gradcheck(layer, x)


@pytest.mark.parametrize("in_channels, filters, strides", [(3, 3, 1), (2, 4, 1), (2, 4, 2), (3, 3, 2)])
def test_basic_block_gradcheck_and_shapes(backend, in_channels, filters, strides):
    block = basic_block(filters, strides)
    x = _x(2, in_channels, 4, 4)
    y = block.forward(x, training=True)
    out = 4 if strides == 1 else 2
    assert y.shape == (2, filters, out, out)
    assert (backend.to_numpy(y) >= 0).all()  # the final ReLU
    projected = in_channels != filters or strides != 1
    names = [n for n, _ in block.named_parameters()]
    assert any("projection" in n for n in names) == projected
    assert sum(isinstance(l, BatchNorm) for l in _walk(block)) == (3 if projected else 2)
    assert gradcheck(block, x, training=True)


def _walk(layer):
    yield layer
    for child in layer.children.values():
        yield from _walk(child)


def test_basic_block_stack_and_state(backend):
    model = Sequential([basic_block(4, 2), basic_block(4)])
    x = _x(2, 2, 6, 6)
    y_train = model.forward(x, training=True)
    assert y_train.shape == (2, 4, 3, 3)
    state = model.state_dict()
    assert any(k.endswith("running_var") for k in state)
    y_eval = backend.to_numpy(model.forward(x, training=False))
    assert np.isfinite(y_eval).all()
    other = Sequential([basic_block(4, 2), basic_block(4)])
    other.forward(x, training=True)
    other.load_state_dict(state)
    np.testing.assert_allclose(backend.to_numpy(other.forward(x)), y_eval, rtol=1e-6)


def test_projection_shortcut_helper(backend):
    short = projection_shortcut(6, 2)
    assert short.forward(_x(2, 3, 4, 4), training=True).shape == (2, 6, 2, 2)


def test_residual_bad_inputs():
    with pytest.raises(TypeError, match="argument 'block' must be a gpunn Layer"):
        Residual(lambda x: x)
    with pytest.raises(TypeError, match="argument 'shortcut' must be None"):
        Residual(Dense(3), shortcut="conv")
    with pytest.raises(ValueError, match="differs from the input"):
        Residual(Dense(3)).forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="differs from the shortcut's"):
        Residual(Dense(3), shortcut=Dense(2)).forward(np.ones((2, 4), np.float32))
    layer = Residual(Dense(4))
    layer.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="must have 4 features"):
        layer.forward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="argument 'filters' must be a positive int"):
        basic_block(0)
    with pytest.raises(ValueError, match="argument 'strides' must be >= 1"):
        basic_block(4, 0)
