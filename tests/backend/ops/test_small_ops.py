"""The small backend ops the layers share (relu_forward/_backward, matmul, the fused batch-norm
ReLU, the conv's fused ReLU): results on every backend, and a clear error for bad input."""
from __future__ import annotations

import numpy as np
import pytest


def _rand(be, shape, seed, dtype=np.float32):
    return be.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def test_relu_ops(backend):
    x = _rand(backend, (3, 4, 5, 5), 0)
    y = backend.relu_forward(x)
    xn = backend.to_numpy(x)
    np.testing.assert_array_equal(backend.to_numpy(y), np.maximum(xn, 0))
    dy = _rand(backend, x.shape, 1)
    np.testing.assert_array_equal(backend.to_numpy(backend.relu_backward(dy, y)),
                                  backend.to_numpy(dy) * (xn > 0))
    nan = backend.asarray(np.array([[np.nan, -1.0, 2.0]], dtype=np.float32))
    assert np.isnan(backend.to_numpy(backend.relu_forward(nan))[0, 0])  # NaN propagates, as in PyTorch


def test_relu_ops_reject_bad_input(backend):
    with pytest.raises(TypeError, match="argument 'x' must be a floating-point array"):
        backend.relu_forward(backend.asarray(np.arange(4)))
    y = _rand(backend, (2, 3), 0)
    with pytest.raises(ValueError, match="argument 'dy' must have the shape of 'y'"):
        backend.relu_backward(_rand(backend, (3,), 1), y)  # would broadcast silently
    with pytest.raises(TypeError, match="argument 'dy' must have the dtype of 'y'"):
        backend.relu_backward(_rand(backend, (2, 3), 1, np.float64), y)


def test_matmul(backend):
    a, b = _rand(backend, (37, 11), 0), _rand(backend, (11, 5), 1)
    np.testing.assert_allclose(backend.to_numpy(backend.matmul(a, b)),
                               backend.to_numpy(a) @ backend.to_numpy(b), rtol=1e-5, atol=1e-5)


def test_matmul_rejects_bad_input(backend):
    with pytest.raises(ValueError, match="argument 'b' must have 11 rows"):
        backend.matmul(_rand(backend, (4, 11), 0), _rand(backend, (10, 5), 1))
    with pytest.raises(ValueError, match="argument 'a' must have at least 2 dimensions"):
        backend.matmul(_rand(backend, (11,), 0), _rand(backend, (11, 5), 1))


def test_batchnorm_relu_backward_rejects_a_wrong_y(backend):
    x = _rand(backend, (4, 3, 2, 2), 0)
    g, b = backend.asarray(np.ones(3, np.float32)), backend.asarray(np.zeros(3, np.float32))
    y, mean, invstd = backend.batchnorm_relu_forward_train(x, g, b, None, None, 0.1, 1e-5)
    assert backend.to_numpy(y).min() >= 0
    with pytest.raises(ValueError, match="argument 'y' must have the shape of 'x'"):
        backend.batchnorm_relu_backward(_rand(backend, x.shape, 1), y[:2], x, g, mean, invstd)


def test_conv_relu_y_must_be_the_forward_output(backend):
    x, w = _rand(backend, (2, 3, 6, 6), 0), _rand(backend, (4, 3, 3, 3), 1)
    y, cache = backend.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), relu=True)
    dy = _rand(backend, y.shape, 2)
    with pytest.raises(ValueError, match="argument 'relu_y' must be the forward's output"):
        backend.conv2d_backward(dy, x.shape, w, cache, (1, 1), (1, 1), (1, 1), relu_y=y[:1])
    with pytest.raises(ValueError, match="argument 'relu_y' must be the forward's output"):
        backend.conv2d_backward(dy, x.shape, w, cache, (1, 1), (1, 1), (1, 1), relu_y=y.astype(np.float64))


def test_conv_backward_rejects_a_dy_of_another_shape(backend):
    x, w = _rand(backend, (2, 3, 6, 6), 0), _rand(backend, (4, 3, 3, 3), 1)
    y, cache = backend.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match=r"argument 'dy' must have the forward output's shape \(2, 4, 6, 6\)"):
        backend.conv2d_backward(_rand(backend, (2, 4, 5, 6), 2), x.shape, w, cache, (1, 1), (1, 1), (1, 1))
