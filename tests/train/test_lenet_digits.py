"""End to end: a LeNet-5-shaped network trains on the digits data with plain SGD."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Conv2D, Dense, Flatten, MaxPool2D
from gpunn.losses import SoftmaxCrossEntropy

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def test_lenet_shaped_network_reaches_95_percent_on_digits():
    gpunn.manual_seed(0)
    data = sklearn_datasets.load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[:360], order[360:]
    # CONV-POOL-CONV-POOL-FC-FC-FC, 5x5 convs padded for the 8x8 input
    model = Sequential([Conv2D(6, 5, padding=2, activation="relu"), MaxPool2D(2),
                        Conv2D(16, 5, padding=2, activation="relu"), MaxPool2D(2), Flatten(),
                        Dense(120, activation="relu"), Dense(84, activation="relu"), Dense(10)])
    loss = SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    lr = 0.05
    for _ in range(8):
        perm = rng.permutation(train)
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            model.zero_grad()
            loss.forward(model.forward(x[idx], training=True), y[idx])
            model.backward(loss.backward())
            for p in model.parameters():  # the minimal SGD step
                p.data -= lr * p.grad
    accuracy = (model.forward(x[test]).argmax(axis=1) == y[test]).mean()
    assert accuracy >= 0.95
