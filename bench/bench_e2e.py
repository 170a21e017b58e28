"""End-to-end training steps (forward, backward, Adam step) at batch 128 on every gpunn backend.

    .venv/bin/pytest bench/bench_e2e.py --benchmark-enable

- LeNet-5 on 1x28x28: conv5x5-6 (pad 2), ReLU, pool, conv5x5-16, ReLU, pool, fc120, fc84, fc10.
- The CIFAR-style CNN on 3x32x32: conv3x3-32, BN, ReLU x2, pool, conv3x3-64, BN, ReLU x2, pool, fc10.
bench_peers.py builds the same networks in PyTorch under the same keys. extra_info.items_per_s
is the training throughput in images per second.
"""
from __future__ import annotations

import numpy as np
import pytest


def lenet5():
    from gpunn import Sequential
    from gpunn.layers import Conv2D, Dense, Flatten, MaxPool2D
    return Sequential([Conv2D(6, 5, padding=2, activation="relu"), MaxPool2D(2),
                       Conv2D(16, 5, activation="relu"), MaxPool2D(2), Flatten(),
                       Dense(120, activation="relu"), Dense(84, activation="relu"), Dense(10)])


def cifar_cnn():
    from gpunn import Sequential
    from gpunn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU

    def block(filters):
        return [Conv2D(filters, 3, padding=1), BatchNorm(), ReLU()]
    return Sequential([*block(32), *block(32), MaxPool2D(2), *block(64), *block(64), MaxPool2D(2),
                       Flatten(), Dense(10)])


MODELS = {"lenet5": (lenet5, (1, 28, 28)), "cifar_cnn": (cifar_cnn, (3, 32, 32))}


def make_step(be, model_name: str, n: int):
    """A closure running one training step; the model is built and warmed up first."""
    from gpunn.losses import SoftmaxCrossEntropy
    try:
        from gpunn.optim import Adam
    except ImportError as exc:  # the optimizers land separately
        pytest.skip(f"gpunn.optim.Adam is not available: {exc}")
    build, shape = MODELS[model_name]
    model = build()
    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal((n, *shape), dtype=np.float32))
    y = rng.integers(0, 10, n)
    model.forward(x[:2], training=False)  # build
    model.layers[0].needs_input_grad = False  # nothing upstream of the first conv wants dx
    loss = SoftmaxCrossEntropy()
    opt = Adam(model, lr=1e-3)

    def step() -> None:
        model.zero_grad()
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        opt.step()
    step()
    return step


@pytest.mark.parametrize("model_name", list(MODELS))
def test_train_step(benchmark, bench_backend, record, timed, bench_rounds, batch_size, model_name):
    be = bench_backend
    step = make_step(be, model_name, batch_size)
    timed(benchmark, step, be.synchronize, bench_rounds)
    from conftest import DEVICE_OF  # bench/ is on sys.path under pytest's default import mode
    record(benchmark, f"train_step/{model_name}", "gpunn", DEVICE_OF.get(be.name, be.name), items=batch_size)
