"""Every optimizer fits the seeds' five-row regression table (XW + b) with a Dense layer and MSE.

Inputs and targets are standardized (zero mean, unit variance per column). The least-squares optimum
of the standardized problem has MSE 2.5e-4; each optimizer must get below LOSS_BOUND = 5e-3 within
500 full-batch steps (about 2 points squared on the raw 142..196 score scale), from an initial MSE
near 1.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense
from gpunn.losses import MSE
from gpunn.optim import SGD, Adadelta, Adagrad, Adam, AdamW, Nadam, RMSprop, get_optimizer
from gpunn.optim.schedules import CosineAnnealing, ReduceLROnPlateau

X = np.array([[73, 80, 75], [93, 88, 93], [89, 91, 90], [96, 98, 100], [73, 66, 70]], dtype=np.float64)
Y = np.array([[152], [185], [180], [196], [142]], dtype=np.float64)
XN = (X - X.mean(axis=0)) / X.std(axis=0)
YN = (Y - Y.mean()) / Y.std()
LOSS_BOUND = 5e-3
STEPS = 500

SETTINGS = [
    (SGD, {"lr": 0.1}),
    (SGD, {"lr": 0.05, "momentum": 0.9}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (Adagrad, {"lr": 0.5}),
    (RMSprop, {"lr": 0.01}),
    (RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    (Adadelta, {"lr": 1.0}),
    (Adam, {"lr": 0.05}),
    (Adam, {"lr": 0.05, "amsgrad": True}),
    (AdamW, {"lr": 0.05, "weight_decay": 1e-4}),
    (Nadam, {"lr": 0.05}),
]


def least_squares_mse() -> float:
    a = np.c_[XN, np.ones(len(XN))]
    sol = np.linalg.lstsq(a, YN, rcond=None)[0]
    return float(np.mean((a @ sol - YN) ** 2))


def fit(backend, model, opt, steps, on_step=None) -> tuple[float, float]:
    x, y = backend.asarray(XN), backend.asarray(YN)
    loss = MSE()
    first = last = None
    for i in range(steps):
        opt.zero_grad()
        last = float(loss.forward(model.forward(x, training=True), y))
        first = last if first is None else first
        model.backward(loss.backward())
        opt.step()
        if on_step is not None:
            on_step(i, last)
    return first, last


def test_the_bound_is_meaningful():
    assert least_squares_mse() < LOSS_BOUND / 10


@pytest.mark.parametrize("cls,kw", SETTINGS, ids=[f"{c.__name__}-{'-'.join(map(str, kw.values()))}"
                                                  for c, kw in SETTINGS])
def test_converges_on_the_regression_table(backend, cls, kw):
    gpunn.manual_seed(0)
    layer = Dense(1)
    first, last = fit(backend, layer, cls(layer, **kw), STEPS)
    assert first > 0.1
    assert last < LOSS_BOUND, f"{cls.__name__}{kw}: MSE {last:.3g} after {STEPS} steps"


def test_training_example_with_schedules(backend):
    """A small two-layer net with Adam by name, a warmed-up cosine schedule, and a plateau watcher."""
    gpunn.manual_seed(0)
    model = Sequential([Dense(8, activation="tanh"), Dense(1)])
    opt = get_optimizer("adam", model, lr=0.05)
    cosine = CosineAnnealing(opt, T_max=300, eta_min=1e-4, warmup_steps=20)
    lrs: list[float] = []

    def each(i, loss):
        lrs.append(opt.lr)
        cosine.step()

    first, last = fit(backend, model, opt, 320, each)
    assert last < LOSS_BOUND
    assert lrs[0] == pytest.approx(0.05 / 21) and max(lrs) == pytest.approx(0.05)
    assert opt.lr == pytest.approx(1e-4)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=2)
    opt.lr = 0.01
    for _ in range(4):
        plateau.step(last)  # no improvement after the first call: halved once patience runs out
    assert opt.lr == pytest.approx(0.005)
