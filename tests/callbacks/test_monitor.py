"""TrainingMonitor: gradient norms, activation percentiles vs NumPy, dead ReLUs, the vanishing warning, plot."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn.callbacks import TrainingMonitor
from gpunn import Sequential
from gpunn.layers import Dense, ReLU, Sigmoid


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def test_percentiles_match_numpy_and_grad_norms_match_params():
    x, y = data()
    probe = x[:10]
    model = Sequential([Dense(8, activation="tanh", input_shape=(5,)), Dense(6), ReLU(), Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.1)
    mon = TrainingMonitor(probe=probe, percentiles=(15, 50, 85))
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[mon])
    assert len(mon.records) == 3 and [r["epoch"] for r in mon.records] == [0, 1, 2]
    last = mon.records[-1]
    h = probe
    for i, layer in enumerate(model.layers):
        h = layer.forward(h)
        expected = np.percentile(h, [15, 50, 85])
        np.testing.assert_allclose(last["percentiles"][f"{i}:{layer.name}"], expected, rtol=1e-6)
    # the grads left by the last batch
    for i, layer in enumerate(model.layers):
        key = f"{i}:{layer.name}"
        if layer.parameters():
            expected = np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in layer.parameters()))
            assert last["grad_norms"][key] == pytest.approx(expected, rel=1e-9)
        else:
            assert key not in last["grad_norms"]
    assert mon.series("percentiles", "0:Dense").shape == (3, 3)


def test_dead_relu_share():
    model = Sequential([Dense(4, activation="relu", input_shape=(3,))])
    model.build((3,))
    w = model.layers[0].params["weight"].data
    b = model.layers[0].params["bias"].data
    w[...] = 0
    b[...] = [1.0, -1.0, -2.0, 0.5]  # units 1 and 2 are zero for every input: dead
    model.compile(loss="mse", optimizer="sgd", lr=0.0)
    mon = TrainingMonitor(probe=np.ones((6, 3), np.float32))
    model.fit(np.ones((6, 3), np.float32), np.zeros((6, 4), np.float32), epochs=1, verbose=0, callbacks=[mon])
    assert mon.records[0]["dead_relu"] == {"0:Dense": 0.5}


def test_every_n_steps_and_default_probe():
    x, y = data(40)
    model = Sequential([Dense(4, activation="relu", input_shape=(5,)), Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    mon = TrainingMonitor(every_n_steps=2)
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[mon])  # 8 steps
    assert [r["step"] for r in mon.records] == [2, 4, 6, 8]
    assert mon.probe.shape == (10, 5)  # the first batch, kept fixed


def test_vanishing_gradient_warning_fires_once():
    x, y = data(64)
    gpunn.manual_seed(0)
    # a deep sigmoid stack with tiny weights: the first layer's gradient is orders of magnitude below the last's
    model = Sequential([Dense(16, kernel_initializer="zeros", input_shape=(5,))]
                       + [layer for _ in range(6) for layer in (Dense(16, kernel_initializer="small_random"), Sigmoid())]
                       + [Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.01)
    mon = TrainingMonitor(warn_ratio=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[mon])
    vanishing = [w for w in caught if "vanishing" in str(w.message)]
    assert vanishing, "expected a vanishing-gradient warning"
    assert len(vanishing) == len(mon.warned)  # once per layer, not once per epoch
    assert "0:Dense" in mon.warned


def test_plot(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    x, y = data()
    model = Sequential([Dense(4, activation="relu", input_shape=(5,)), Dense(2)])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    mon = TrainingMonitor()
    with pytest.raises(ValueError, match="nothing recorded"):
        mon.plot(tmp_path / "m.png")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[mon])
    assert Path(mon.plot(tmp_path / "m.png")).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every"), ({"every_n_steps": -1}, "every_n_steps"), ({"percentiles": (15, 101)}, "percentiles"),
    ({"warn_ratio": 2.0}, "warn_ratio"), ({"probe": np.zeros((0, 3), np.float32)}, "probe"),
    ({"probe": np.zeros((2, 3), np.int64)}, "probe"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingMonitor(**kwargs)


def test_series_errors():
    with pytest.raises(ValueError, match="kind"):
        TrainingMonitor().series("nope", "0:Dense")
    with pytest.raises(KeyError, match="no grad_norms"):
        TrainingMonitor().series("grad_norms", "0:Dense")
