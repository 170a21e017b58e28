"""A small conv-BN-pool network trains to the same parameters on the emulated backend and NumPy.

Three Adam steps through every kernel family the model uses (the implicit-GEMM conv, fused batch norm,
max-pool forward/backward, fused Adam), from the same initial weights and data. Tolerance:
parameters and running statistics agree to 1e-5 relative in float32 (the kernels sum in a
different order; every parameter has a gradient well above rounding noise).
"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from gpunn.losses import SoftmaxCrossEntropy
from tests.kernel_support import assert_close, get_kernel_backend

optim = pytest.importorskip("gpunn.optim")


def _model() -> Sequential:
    # No conv bias before batch norm, and a ReLU after the first BN: otherwise BN cancels the bias
    # (or the next BN cancels beta), that gradient is pure rounding noise, and Adam's normalized step
    # turns the noise into +-lr moves that no two backends share.
    return Sequential([Conv2D(5, 3, padding=1, use_bias=False), BatchNorm(), ReLU(),
                       MaxPool2D(3, strides=2, padding=1),  # overlapping windows
                       Conv2D(3, 2, strides=2, use_bias=False), BatchNorm(), Flatten(), Dense(4)])


def _train(backend_name: str, initial: dict, x: np.ndarray, y: np.ndarray, decoupled: bool) -> tuple[dict, list]:
    with gpunn.use_backend(backend_name):
        model = _model()
        model.forward(x[:1])  # build
        model.load_state_dict(initial)
        opt_cls = optim.AdamW if decoupled else optim.Adam
        opt = opt_cls(model, lr=1e-2, weight_decay=1e-2)
        loss = SoftmaxCrossEntropy()
        losses = []
        for _ in range(3):
            opt.zero_grad()
            losses.append(float(loss.forward(model.forward(x, training=True), y)))
            model.backward(loss.backward())
            opt.step()
        return model.state_dict(), losses


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_three_adam_steps_match_numpy(decoupled: bool) -> None:
    get_kernel_backend("emulated")  # skips cleanly when the emulator cannot build here
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 9, 7)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    with gpunn.use_backend("numpy"):
        gpunn.manual_seed(0)
        model = _model()
        model.forward(x[:1])
        initial = model.state_dict()
    want, want_losses = _train("numpy", initial, x, y, decoupled)
    got, got_losses = _train("emulated", initial, x, y, decoupled)
    with gpunn.use_backend("emulated") as be:  # the registry's emulated backend: every kernel op on
        assert "adam_step" in be.use_kernels and "batchnorm_backward" in be.use_kernels
        # <=: earlier tests may have compiled more families (im2col, with the conv ops switched off)
        assert {"conv", "maxpool", "batchnorm", "adam"} <= set(be.kernels.compiled_families())
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-5)
    assert set(got) == set(want)
    for name in want:
        moved = not np.array_equal(want[name], initial[name])
        assert_close(got[name], want[name], name)
        if name.endswith(("weight", "bias", "gamma", "beta")):
            assert moved, f"{name} did not change in 3 steps: the test would prove nothing"


def test_float64_kernels_pass_gradcheck_through_a_conv_bn_pool_stack() -> None:
    """The float64 kernels (implicit-GEMM conv backward, maxpool backward, fused BN backward) against central
    differences."""
    from gpunn.testing import gradcheck
    get_kernel_backend("emulated")
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 5))
    with gpunn.use_backend("emulated") as be:
        gpunn.manual_seed(1)
        model = Sequential([Conv2D(3, 3, padding=1, strides=(1, 2), use_bias=False), BatchNorm(),
                            MaxPool2D(3, strides=2, padding=1), Flatten(), Dense(2)])
        assert gradcheck(model, x, training=True)
        assert {"conv", "maxpool", "batchnorm"} <= set(be.kernels.compiled_families())
