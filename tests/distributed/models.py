"""The models and data the 2-rank tests train, built the same way in the ranks and in the
single-process references (scripts/ import this file by path)."""
from __future__ import annotations

import numpy as np

import gpunn
from gpunn.layers import BatchNorm, Dense, Dropout, ReLU

N, FEATURES, OUTPUTS = 64, 8, 2
BATCH = 8  # per rank; the global batch of 2 ranks is 16
EPOCHS = 2  # 4 steps per epoch: K = 8 steps
SHUFFLE_SEED = 11


def data(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, FEATURES)).astype(dtype)
    w = rng.standard_normal((FEATURES, OUTPUTS))
    y = (np.tanh(x @ w) + 0.1 * rng.standard_normal((N, OUTPUTS))).astype(dtype)
    return x, y


def model(dtype: str, bn: str = "none", dropout: float = 0.0) -> gpunn.Sequential:
    """bn: "none", "sync" (BatchNorm(sync=True)) or "local" (each rank normalizes its own part)."""
    gpunn.manual_seed(7)
    # no bias before a BatchNorm: its true gradient is 0 (BN removes the mean), and Adam would turn
    # the rounding noise in it into full-size steps that no two summation orders agree on
    layers = [Dense(16, input_shape=(FEATURES,), use_bias=bn == "none")]
    if bn != "none":
        layers.append(BatchNorm(sync=bn == "sync"))
    layers.append(ReLU())
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(OUTPUTS))
    m = gpunn.Sequential(layers, dtype=dtype)
    m.shuffle_seed = SHUFFLE_SEED
    return m


def optimizer(name: str) -> gpunn.optim.Optimizer:
    if name == "sgd":
        return gpunn.optim.SGD(lr=0.05, momentum=0.9)
    return gpunn.optim.Adam(lr=0.01)


def flat_params(m: gpunn.Sequential) -> np.ndarray:
    return np.concatenate([np.asarray(p.data, dtype=np.float64).ravel() for p in m.parameters()])


CASES = [(opt, dtype, bn) for dtype in ("float64", "float32") for opt in ("sgd", "adam")
         for bn in ("none", "sync", "local")]


def case_name(opt: str, dtype: str, bn: str) -> str:
    return f"{opt}-{dtype}-{bn}"
