"""The model zoo: each model builds, runs forward and backward, and overfits one batch."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.losses import SoftmaxCrossEntropy
from gpunn.models import alexnet_small, get_model, lenet5, mlp, resnet_small, vgg_small
from gpunn.optim import Adam
from gpunn.testing import gradcheck

# small shapes and widths keep the CPU cost down; the structure is the one users get
ZOO = {
    "mlp": lambda: mlp(input_shape=(1, 6, 6), hidden=(32, 16)),
    "mlp_bn_dropout": lambda: mlp(input_shape=(1, 6, 6), hidden=(32,), batchnorm=True, dropout=0.1),
    "lenet5": lambda: lenet5(input_shape=(1, 12, 12)),
    "lenet5_bn_tanh": lambda: lenet5(batchnorm=True, activation="tanh", input_shape=(1, 12, 12)),
    "vgg_small": lambda: vgg_small(input_shape=(3, 8, 8), widths=(4, 8), dense=16, dropout=0.0),
    "alexnet_small": lambda: alexnet_small(input_shape=(3, 15, 15), dropout=0.0, widths=(8, 8, 8, 8, 8),
                                           dense=(32, 16)),
    "resnet_small": lambda: resnet_small(depth=8, input_shape=(3, 8, 8), widths=(4, 8, 8)),
}


def _batch(model, n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *model.input_shape)).astype(np.float32)
    return x, np.arange(n) % 10


@pytest.mark.parametrize("name", sorted(ZOO))
def test_builds_forward_backward(backend, name):
    model = ZOO[name]()
    assert model.built and model.output_shape == (10,) and model.count_params() > 0
    x, y = _batch(model, 4)
    logits = model.forward(x, training=True)
    assert tuple(logits.shape) == (4, 10)
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, y)
    model.zero_grad()
    dx = model.backward(loss.backward())
    assert tuple(dx.shape) == x.shape
    grads = [backend.to_numpy(p.grad) for p in model.parameters()]
    assert all(np.isfinite(g).all() for g in grads) and sum(float(np.abs(g).sum()) for g in grads) > 0


@pytest.mark.parametrize("name", sorted(ZOO))
def test_overfits_one_batch(backend, name):
    if backend.name == "emulated":  # 60 steps through the CPU-emulated kernels take minutes; the
        pytest.skip("overfit runs on numpy/cupy; the emulated kernels are covered by the forward/backward test")
    gpunn.manual_seed(0)
    model = ZOO[name]()
    x, y = _batch(model, 8)
    lr = 1e-2 if name in ("resnet_small", "vgg_small") else 3e-3  # narrow BN nets need larger steps here
    opt, loss = Adam(model.parameters(), lr=lr), SoftmaxCrossEntropy()
    first = None
    for _ in range(60):
        opt.zero_grad()
        value = loss.forward(model.forward(x, training=True), y)
        first = value if first is None else first
        model.backward(loss.backward())
        opt.step()
    logits = backend.to_numpy(model.forward(x, training=False))
    assert value < 0.1 * first, f"{name}: loss {first:.3f} -> {value:.3f}"
    assert (logits.argmax(axis=1) == y).mean() == 1.0


@pytest.mark.parametrize("name", ["mlp_bn_dropout", "lenet5_bn_tanh"])
def test_input_gradient_matches_central_differences(name):
    model = ZOO[name]()
    x, _ = _batch(model, 4)  # BN over a batch of 2 maps every feature to +-1: ill-conditioned
    assert gradcheck(model, x, check_params=False, atol=1e-6)


def test_lenet5_shapes():
    m = lenet5()
    assert m.input_shape == (1, 28, 28) and m.count_params() == 61706  # the classic 16*5*5 -> 120 layout
    assert lenet5(input_shape=(1, 8, 8)).output_shape == (10,)  # small inputs pad the second conv
    assert resnet_small(20).count_params() == pytest.approx(0.27e6, rel=0.02)  # the paper's 0.27M


def test_get_model():
    assert get_model("lenet5", num_classes=3).output_shape == (3,)
    with pytest.raises(ValueError, match="one of"):
        get_model("resnet1000")


@pytest.mark.parametrize("make,match", [
    (lambda: mlp(hidden=(0,)), "hidden"), (lambda: mlp(num_classes=0), "num_classes"),
    (lambda: mlp(dropout=1.0), "dropout"), (lambda: mlp(activation="nope"), "activation"),
    (lambda: lenet5(input_shape=(28, 28)), "input_shape"), (lambda: lenet5(input_shape=(1, 2, 2)), "4x4"),
    (lambda: lenet5(activation="sigmoid"), "activation"), (lambda: vgg_small(input_shape=(3, 4, 4)), "too small"),
    (lambda: vgg_small(widths=()), "widths"), (lambda: alexnet_small(input_shape=(3, 8, 8)), "15x15"),
    (lambda: alexnet_small(widths=(1, 2)), "widths"), (lambda: alexnet_small(dense=(0, 1)), "dense"),
    (lambda: resnet_small(depth=21), "6n \\+ 2"), (lambda: resnet_small(widths=(1, 2)), "widths"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_input_shape_at_forward():
    with pytest.raises(ValueError, match="channels"):
        lenet5().forward(np.zeros((2, 3, 28, 28), np.float32))
