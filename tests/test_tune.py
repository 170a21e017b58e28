"""Random search (reproducible, ranked, log-space sampling) and Ensemble (averaged probabilities)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import Dense, Softmax
from gpunn.tune import Choice, LogUniform, Uniform, random_search


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = (np.eye(3)[y] * 2.0 + rng.normal(size=(n, 3)) * 0.7).astype(np.float32)
    return x, y


def build(lr, l2, hidden=8):
    model = Sequential([Dense(hidden, activation="relu", input_shape=(3,), kernel_regularizer=gpunn.regularizers.L2(l2)),
                        Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=lr)
    return model


def test_distributions():
    rng = np.random.default_rng(0)
    lu = LogUniform(1e-4, 1e-1)
    s = np.array([lu.sample(rng) for _ in range(4000)])
    assert s.min() >= 1e-4 and s.max() < 1e-1
    # log-uniform: each decade gets about a third of the draws
    counts = np.histogram(np.log10(s), bins=[-4, -3, -2, -1])[0] / len(s)
    np.testing.assert_allclose(counts, 1 / 3, atol=0.03)
    u = np.array([Uniform(2, 3).sample(rng) for _ in range(1000)])
    assert 2 <= u.min() and u.max() < 3 and abs(u.mean() - 2.5) < 0.03
    c = [Choice(["a", "b"]).sample(rng) for _ in range(1000)]
    assert set(c) == {"a", "b"} and 400 < c.count("a") < 600


@pytest.mark.parametrize("make, match", [
    (lambda: LogUniform(0, 1), "'low' must be > 0"), (lambda: LogUniform(1, 0.5), "'low' must be < 'high'"),
    (lambda: Uniform(1, 1), "'low' must be < 'high'"), (lambda: Uniform(float("nan"), 1), "'low'"),
    (lambda: Choice([]), "options"), (lambda: Choice("abc"), "options"),
])
def test_distribution_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_random_search_is_reproducible_and_ranked(capsys):
    x, y = data()
    xv, yv = data(30, seed=1)
    space = {"lr": LogUniform(1e-3, 1e-1), "l2": LogUniform(1e-5, 1e-2), "hidden": Choice([4, 8])}

    def run(seed):
        return random_search(build, space, trials=4, epochs=2, x=x, y=y, validation_data=(xv, yv), seed=seed,
                             batch_size=16)

    a, b = run(5), run(5)
    assert a.monitor == "val_accuracy" and a.mode == "max"
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == [t.score for t in b.trials]
    scores = [t.score for t in a.trials]
    assert scores == sorted(scores, reverse=True)
    assert {t.index for t in a.trials} == {0, 1, 2, 3}
    assert all(1e-3 <= t.params["lr"] < 1e-1 and t.params["hidden"] in (4, 8) for t in a.trials)
    assert [t.params for t in run(6).trials] != [t.params for t in a.trials]
    # each trial's score is what its model reports
    best = a.best
    assert best.score == best.metrics["val_accuracy"] == best.history["val_accuracy"][-1]
    a.print()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rank", "trial", "hidden", "l2", "lr", "val_accuracy"]
    assert len(out) == 5


def test_random_search_val_loss_ranks_ascending():
    x, y = data()
    res = random_search(build, {"lr": LogUniform(1e-3, 1e-1), "l2": 0.0}, trials=3, epochs=1, x=x, y=y,
                        validation_data=data(20, 2), monitor="val_loss", seed=0)
    scores = [t.score for t in res.trials]
    assert res.mode == "min" and scores == sorted(scores)


@pytest.mark.parametrize("kwargs, match", [
    ({"trials": 0}, "trials"), ({"epochs": 0}, "epochs"), ({"seed": -1}, "seed"), ({"space": {}}, "space"),
    ({"validation_data": None}, "validation_data"), ({"x": None}, "'x' and 'y'"), ({"mode": "up"}, "mode"),
    ({"monitor": "val_f1"}, "monitor"),
])
def test_random_search_bad_arguments(kwargs, match):
    x, y = data(20)
    args = {"build_fn": build, "space": {"lr": LogUniform(1e-3, 1e-1), "l2": 0.0}, "trials": 1, "epochs": 1,
            "x": x, "y": y, "validation_data": (x, y), **kwargs}
    with pytest.raises(ValueError, match=match):
        random_search(**args)
    with pytest.raises(TypeError, match="compiled"):
        random_search(lambda **kw: Sequential([Dense(3)]), {"a": 1}, trials=1, epochs=1, x=x, y=y,
                      validation_data=(x, y))


# -- ensembles --------------------------------------------------------------------------------
def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ensemble_averages_probabilities_and_reports_accuracy():
    x, y = data()
    xv, yv = data(40, seed=3)
    members = []
    for seed in range(3):
        gpunn.manual_seed(seed)
        m = build(0.05, 0.0)
        m.fit(x, y, epochs=3, batch_size=16, verbose=0)
        members.append(m)
    ens = gpunn.Ensemble(members)
    probs = ens.predict(xv)
    expected = np.mean([softmax(m.predict(xv).astype(np.float64)) for m in members], axis=0)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    report = ens.evaluate(xv, yv)
    assert report["accuracy"] == pytest.approx((expected.argmax(1) == yv).mean())
    assert report["member_accuracy"] == pytest.approx([m.evaluate(xv, yv)[1] for m in members])
    assert report["accuracy"] >= 0.8


def test_ensemble_with_probability_outputs_and_weights():
    x, _ = data(10)
    a = Sequential([Dense(3, input_shape=(3,)), Softmax()])
    b = Sequential([Dense(3, input_shape=(3,)), Softmax()])
    ens = gpunn.Ensemble([a, b], weights=[3, 1])
    expected = 0.75 * a.predict(x).astype(np.float64) + 0.25 * b.predict(x)
    np.testing.assert_allclose(ens.predict(x), expected, rtol=1e-6)


def test_ensemble_bad_arguments():
    a = Sequential([Dense(3, input_shape=(3,))])
    with pytest.raises(ValueError, match="models"):
        gpunn.Ensemble([])
    with pytest.raises(TypeError, match=r"models\[1\]"):
        gpunn.Ensemble([a, object()])
    with pytest.raises(ValueError, match="weights"):
        gpunn.Ensemble([a, a], weights=[1, -1])
    x, _ = data(5)
    with pytest.raises(ValueError, match="same number of samples"):
        gpunn.Ensemble([a]).evaluate(x, np.zeros(4))
    with pytest.raises(ValueError, match="different shapes"):
        gpunn.Ensemble([a, Sequential([Dense(2, input_shape=(3,))])]).predict(x)
    assert not math.isnan(gpunn.Ensemble([a]).predict(x).sum())
