"""Normalization layers: BatchNorm (train vs inference, running statistics, buffers, frozen mode,
the backend ops), LayerNorm, GroupNorm, InstanceNorm, WeightNorm; gradchecks and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, GroupNorm, InstanceNorm, LayerNorm, ReLU, WeightNorm
from gpunn.testing import gradcheck


def _x(*shape, seed=0, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, shape)


def _randomize_affine(layer, backend, seed=5):
    """Move gamma and beta away from ones and zeros so their gradients are checked non-trivially."""
    rng = np.random.default_rng(seed)
    for p in layer.parameters():
        p.data[...] = backend.asarray(rng.uniform(0.5, 1.5, p.shape))


def _bn_reference(x, gamma, beta, eps):
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, mean, var


# -- BatchNorm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(backend, shape, training):
    layer = BatchNorm()
    x = _x(*shape, loc=2.0, scale=3.0)
    layer.forward(x, training=True)  # build, and move the running stats off (0, 1)
    _randomize_affine(layer, backend)
    assert gradcheck(layer, x, training=training)


@pytest.mark.parametrize("affine, track", [(False, True), (True, False), (False, False)])
def test_batchnorm_gradcheck_options(backend, affine, track):
    layer = BatchNorm(affine=affine, track_running_stats=track)
    assert gradcheck(layer, _x(4, 3, 2, 2), training=True)
    assert gradcheck(layer, _x(4, 3, 2, 2, seed=1), training=False)
    assert len(layer.parameters()) == (2 if affine else 0)
    assert set(layer.buffers) == ({"running_mean", "running_var"} if track else set())


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5)])
def test_batchnorm_training_normalizes_per_channel(backend, shape):
    layer = BatchNorm().to_dtype(np.float64)
    x = _x(*shape, loc=5.0, scale=4.0)
    x[:, 1] = x[:, 1] * 0.1 + 7.0  # a channel with its own scale and shift
    layer.forward(x, training=True)
    _randomize_affine(layer, backend)
    gamma = backend.to_numpy(layer.params["gamma"].data)
    beta = backend.to_numpy(layer.params["beta"].data)
    y = backend.to_numpy(layer.forward(x, training=True))
    ref, _, _ = _bn_reference(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(((y - beta.reshape((1, -1) + (1,) * (len(shape) - 2))) /
                                gamma.reshape((1, -1) + (1,) * (len(shape) - 2))).var(axis=axes), 1.0, rtol=1e-3)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 3)])
def test_batchnorm_running_stats_match_hand_computation(backend, shape):
    momentum = 0.3
    layer = BatchNorm(momentum=momentum).to_dtype(np.float64)
    running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
    m = int(np.prod(shape)) // shape[1]
    axes = (0, *range(2, len(shape)))
    for step in range(5):
        x = _x(*shape, seed=step, loc=step - 1.0, scale=1.0 + step)
        layer.forward(x, training=True)
        # PyTorch's rule: running = (1 - momentum) * running + momentum * batch, unbiased variance
        running_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=axes)
        running_var = (1 - momentum) * running_var + momentum * x.var(axis=axes) * m / (m - 1)
    np.testing.assert_allclose(backend.to_numpy(layer.buffers["running_mean"]), running_mean, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(layer.buffers["running_var"]), running_var, rtol=1e-12)
    # the inference pass does not touch them
    layer.forward(_x(*shape, seed=99), training=False)
    np.testing.assert_allclose(backend.to_numpy(layer.buffers["running_mean"]), running_mean, rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 3, 3)])
def test_batchnorm_inference_uses_running_stats_and_differs_from_training(backend, shape):
    layer = BatchNorm(eps=1e-3).to_dtype(np.float64)
    for step in range(3):
        layer.forward(_x(*shape, seed=step, loc=1.0, scale=2.0), training=True)
    _randomize_affine(layer, backend)
    x = _x(*shape, seed=10, loc=-1.0)
    rm = backend.to_numpy(layer.buffers["running_mean"])
    rv = backend.to_numpy(layer.buffers["running_var"])
    gamma = backend.to_numpy(layer.params["gamma"].data)
    beta = backend.to_numpy(layer.params["beta"].data)
    s = (1, -1) + (1,) * (len(shape) - 2)
    expected = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-3) * gamma.reshape(s) + beta.reshape(s)
    y_eval = backend.to_numpy(layer.forward(x, training=False))
    np.testing.assert_allclose(y_eval, expected, rtol=1e-10, atol=1e-12)
    y_train = backend.to_numpy(layer.forward(x, training=True))
    assert np.abs(y_train - y_eval).max() > 0.1


def test_batchnorm_eval_is_deterministic_and_per_sample(backend):
    layer = BatchNorm()
    x = _x(6, 3, 4, 4, loc=2.0).astype(np.float32)
    layer.forward(x, training=True)
    a = backend.to_numpy(layer.forward(x, training=False))
    b = backend.to_numpy(layer.forward(x, training=False))
    np.testing.assert_array_equal(a, b)
    # a sample's output does not depend on the rest of the batch at inference
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x[2:3], training=False)), a[2:3], rtol=1e-6)


def test_batchnorm_buffers_are_saved_and_loaded(backend):
    layer = BatchNorm()
    x = _x(5, 3, 2, 2, loc=3.0)
    layer.forward(x, training=True)
    state = layer.state_dict()
    assert set(state) == {"gamma", "beta", "running_mean", "running_var"}
    assert isinstance(state["running_mean"], np.ndarray)
    other = BatchNorm()
    other.forward(_x(5, 3, 2, 2, seed=7), training=True)
    other.load_state_dict(state)
    np.testing.assert_allclose(backend.to_numpy(other.forward(x)), backend.to_numpy(layer.forward(x)), rtol=1e-12)


def test_frozen_batchnorm_uses_running_stats_in_training(backend):
    layer = BatchNorm()
    for step in range(3):
        layer.forward(_x(6, 3, seed=step, loc=2.0), training=True)
    layer.trainable = False
    before = {k: backend.to_numpy(v).copy() for k, v in layer.buffers.items()}
    x = _x(6, 3, seed=20, loc=-4.0)
    y_frozen = backend.to_numpy(layer.forward(x, training=True))
    np.testing.assert_allclose(y_frozen, backend.to_numpy(layer.forward(x, training=False)), rtol=1e-12)
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(backend.to_numpy(v), before[k])
    assert not any(p.trainable for p in layer.parameters())
    assert gradcheck(layer, x, training=True)


def test_batchnorm_in_a_dense_model(backend):
    # placement from the seeds: Dense, then BN, then the activation
    model = Sequential([Dense(4), BatchNorm(), ReLU(), Dense(2)])
    assert gradcheck(model, _x(6, 3) + 0.01)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_ops_contract(backend, dtype):
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.normal(1000.0, 0.5, (16, 3, 4, 4)).astype(dtype))  # |mean| >> std
    gamma = backend.asarray(rng.uniform(0.5, 2, 3).astype(dtype))
    beta = backend.asarray(rng.normal(size=3).astype(dtype))
    rm = backend.asarray(np.zeros(3, dtype))
    rv = backend.asarray(np.ones(3, dtype))
    y, mean, invstd = backend.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    xn = backend.to_numpy(x).astype(np.float64)
    ref, ref_mean, ref_var = _bn_reference(xn, backend.to_numpy(gamma).astype(np.float64),
                                           backend.to_numpy(beta).astype(np.float64), 1e-5)
    tol = 1e-3 if dtype == np.float32 else 1e-9
    assert y.dtype == dtype and mean.shape == (3,) and invstd.shape == (3,)
    np.testing.assert_allclose(backend.to_numpy(y), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(backend.to_numpy(invstd), 1 / np.sqrt(ref_var + 1e-5), rtol=tol)
    np.testing.assert_allclose(backend.to_numpy(rm), 0.1 * ref_mean, rtol=1e-6)
    m = 16 * 16
    np.testing.assert_allclose(backend.to_numpy(rv), 0.9 + 0.1 * ref_var * m / (m - 1), rtol=1e-4)
    # running statistics may be absent
    y2, _, _ = backend.batchnorm_forward_train(x, gamma, beta, None, None, 0.1, 1e-5)
    np.testing.assert_array_equal(backend.to_numpy(y2), backend.to_numpy(y))
    dy = backend.asarray(rng.normal(size=x.shape).astype(dtype))
    dx, dgamma, dbeta = backend.batchnorm_backward(dy, x, gamma, mean, invstd)
    assert dx.dtype == dtype and dgamma.shape == (3,) and dbeta.shape == (3,)
    dyn = backend.to_numpy(dy).astype(np.float64)
    np.testing.assert_allclose(backend.to_numpy(dbeta), dyn.sum(axis=(0, 2, 3)), rtol=1e-4)
    # dx is orthogonal to the constant and to xhat per channel (the closed form's projection)
    assert np.abs(backend.to_numpy(dx).astype(np.float64).sum(axis=(0, 2, 3))).max() < (1e-2 if dtype == np.float32
                                                                                           else 1e-8)
    y_inf = backend.batchnorm_forward_infer(x, gamma, beta, mean, 1 / invstd ** 2 - 1e-5, 1e-5)
    np.testing.assert_allclose(backend.to_numpy(y_inf), backend.to_numpy(y), rtol=tol, atol=tol)


# -- LayerNorm, GroupNorm, InstanceNorm -----------------------------------------------------------
@pytest.mark.parametrize("k, shape", [(1, (3, 5)), (1, (2, 3, 4)), (2, (2, 3, 4)), (3, (2, 2, 3, 3))])
def test_layernorm_gradcheck_and_reference(backend, k, shape):
    layer = LayerNorm(normalized_ndim=k)
    x = _x(*shape, loc=1.0, scale=2.0)
    layer.forward(x)
    _randomize_affine(layer, backend)
    assert layer.params["gamma"].shape == shape[len(shape) - k:]
    assert gradcheck(layer, x)
    axes = tuple(range(len(shape) - k, len(shape)))
    ref = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
    ref = ref * backend.to_numpy(layer.params["gamma"].data) + backend.to_numpy(layer.params["beta"].data)
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x)), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups, shape", [(1, (3, 4)), (2, (2, 4, 3)), (2, (2, 4, 2, 3)), (4, (2, 4, 2, 2))])
def test_groupnorm_gradcheck_and_reference(backend, groups, shape):
    layer = GroupNorm(groups)
    x = _x(*shape, loc=-1.0, scale=3.0)
    layer.forward(x)
    _randomize_affine(layer, backend)
    assert gradcheck(layer, x)
    n, c = shape[:2]
    xg = x.reshape(n, groups, -1)
    ref = ((xg - xg.mean(axis=2, keepdims=True)) / np.sqrt(xg.var(axis=2, keepdims=True) + 1e-5)).reshape(shape)
    s = (1, c) + (1,) * (len(shape) - 2)
    ref = ref * backend.to_numpy(layer.params["gamma"].data).reshape(s) + \
        backend.to_numpy(layer.params["beta"].data).reshape(s)
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x)), ref, rtol=1e-10, atol=1e-12)


def test_instancenorm_gradcheck_and_equals_groupnorm_per_channel(backend):
    x = _x(2, 3, 4, 4, loc=2.0)
    inst = InstanceNorm()
    assert gradcheck(inst, x)
    per_channel = GroupNorm(3).to_dtype(np.float64)  # gradcheck left inst in float64
    np.testing.assert_allclose(backend.to_numpy(inst.forward(x)), backend.to_numpy(per_channel.forward(x)),
                               rtol=1e-12)
    y = backend.to_numpy(inst.forward(x))
    np.testing.assert_allclose(y.mean(axis=(2, 3)), 0, atol=1e-10)


def test_norms_without_affine_have_no_parameters(backend):
    for layer in [LayerNorm(affine=False), GroupNorm(2, affine=False), InstanceNorm(affine=False)]:
        assert gradcheck(layer, _x(2, 4, 3))
        assert layer.parameters() == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norms_compute_in_their_own_dtype(backend, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    x = _x(4, 4, 3, 3).astype(other)  # cast to the layer's dtype, never adopted
    for layer in [BatchNorm(), LayerNorm(), GroupNorm(2), InstanceNorm()]:
        layer.to_dtype(dtype)
        assert layer.forward(x, training=True).dtype == dtype
        assert layer.backward(backend.asarray(np.ones_like(x))).dtype == dtype


# -- WeightNorm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, x", [
    (lambda: Dense(3, activation="tanh"), _x(4, 5)),
    (lambda: Dense(2, use_bias=False), _x(2, 3, 4)),
    (lambda: Conv2D(2, 2, strides=1), _x(2, 3, 4, 4)),
])
def test_weightnorm_gradcheck(backend, make, x):
    layer = WeightNorm(make())
    layer.forward(x)
    g = layer.params["g"]
    g.data[...] = backend.asarray(np.random.default_rng(3).uniform(0.5, 2.0, g.shape))
    assert gradcheck(layer, x)


def test_weightnorm_starts_at_the_wrapped_weight_and_keeps_norm_g(backend):
    x = _x(4, 5)
    dense = Dense(3).to_dtype(np.float64)
    plain = backend.to_numpy(dense.forward(x)).copy()
    layer = WeightNorm(dense)
    np.testing.assert_allclose(backend.to_numpy(layer.forward(x)), plain, rtol=1e-12)
    g = layer.params["g"]
    g.data[...] = backend.asarray(np.array([0.5, 1.0, 2.0]))
    layer.forward(x)
    w = backend.to_numpy(dense.params["weight"].data)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), [0.5, 1.0, 2.0], rtol=1e-12)
    conv = WeightNorm(Conv2D(4, 3))
    conv.forward(_x(1, 2, 5, 5))
    assert conv.params["g"].shape == (4,)
    w = backend.to_numpy(conv.layer.params["weight"].data)
    np.testing.assert_allclose(np.sqrt((w ** 2).sum(axis=(1, 2, 3))), backend.to_numpy(conv.params["g"].data),
                               rtol=1e-6)


def test_weightnorm_parameters_and_state(backend):
    layer = WeightNorm(Dense(3))
    layer.forward(_x(2, 4))
    assert [name for name, _ in layer.named_parameters()] == ["v", "g", "layer.bias"]
    assert set(layer.state_dict()) == {"v", "g", "layer.bias"}
    model = Sequential([layer, Dense(2)])
    assert "0.layer.weight" not in model.state_dict() and "0.v" in model.state_dict()


def test_weightnorm_rejects_other_layers():
    with pytest.raises(TypeError, match="argument 'layer' must be a Dense or Conv2D"):
        WeightNorm(ReLU())


# -- bad inputs -----------------------------------------------------------------------------------
def test_batchnorm_wrong_channel_count():
    layer = BatchNorm()
    layer.forward(np.ones((2, 3, 4, 4), np.float32), training=True)
    with pytest.raises(ValueError, match=r"must have 3 channels \(axis 1\)"):
        layer.forward(np.ones((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="must have 3 channels"):
        BatchNorm(num_features=3).forward(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="must have 4 dimensions as built"):
        layer.forward(np.ones((2, 3), np.float32))


def test_batchnorm_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="argument 'momentum' must be a float in"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="argument 'momentum'"):
        BatchNorm(momentum=-0.1)
    with pytest.raises(ValueError, match="argument 'eps' must be a positive float"):
        BatchNorm(eps=-1e-5)
    with pytest.raises(ValueError, match="argument 'num_features' must be a positive int"):
        BatchNorm(num_features=0)
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm().forward(np.ones((1, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="must have 2 or 3 or 4 dimensions"):
        BatchNorm().forward(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        BatchNorm().forward(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match="empty batch"):
        BatchNorm().forward(np.ones((0, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        BatchNorm().backward(np.ones((2, 3), np.float32))


def test_groupnorm_groups_must_divide_channels():
    with pytest.raises(ValueError, match="argument 'groups'=3 must divide the number of channels, got 4"):
        GroupNorm(3).forward(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="argument 'groups' must be a positive int"):
        GroupNorm(0)
    layer = GroupNorm(2)
    layer.forward(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="must have 4 channels"):
        layer.forward(np.ones((2, 6, 2, 2), np.float32))


def test_layernorm_and_instancenorm_bad_inputs():
    with pytest.raises(ValueError, match="argument 'normalized_ndim' must be a positive int"):
        LayerNorm(0)
    with pytest.raises(ValueError, match="at least 2 axes after the batch axis"):
        LayerNorm(2).forward(np.ones((2, 3), np.float32))
    layer = LayerNorm()
    layer.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"must end in axes \(3,\)"):
        layer.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="must have 3 or 4 dimensions"):
        InstanceNorm().forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="argument 'eps'"):
        InstanceNorm(eps=0)
