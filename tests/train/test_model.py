"""The model API: compile/fit/evaluate/predict on every backend, batches, summary, to(), freezing,
bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Sequential
from gpunn.layers import BatchNorm, Dense, Dropout


def blobs(n: int = 160, seed: int = 0, features: int = 4):
    """Two well separated Gaussian blobs: a linear model reaches 100%."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    centers = np.where(y[:, None] == 1, 1.5, -1.5)
    x = (centers + rng.normal(size=(n, features))).astype(np.float32)
    return x, y


def mlp(hidden: int = 16, bn: bool = False) -> Sequential:
    model = Sequential()
    model.add(Dense(hidden, activation="relu", input_shape=(4,)))
    if bn:
        model.add(BatchNorm())
    model.add(Dense(2))
    return model


def test_fit_evaluate_predict_reach_accuracy(backend):
    x, y = blobs()
    xv, yv = blobs(80, seed=1)
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=0.05)
    history = model.fit(x, y, epochs=8, batch_size=32, validation_data=(xv, yv), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(xv, yv)
    assert acc >= 0.95, f"validation accuracy {acc} on a separable problem"
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    probs = model.predict(xv, batch_size=7)
    assert isinstance(probs, np.ndarray) and probs.shape == (80, 2)
    assert (probs.argmax(1) == yv).mean() == pytest.approx(acc)
    logs = model.evaluate(xv, yv, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


def test_evaluate_is_sample_weighted_mean():
    x, y = blobs(50)
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"])
    full = model.evaluate(x, y, batch_size=50)
    split = model.evaluate(x, y, batch_size=16)  # 16+16+16+2: a naive mean of batch means would differ
    assert split == pytest.approx(full, rel=1e-5)


def test_train_and_test_on_batch():
    x, y = blobs(32)
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", lr=0.1)
    before = model.test_on_batch(x, y)
    for _ in range(20):
        model.train_on_batch(x, y)
    after = model.test_on_batch(x, y)
    assert isinstance(before, float) and after < before


def test_validation_split_takes_last_samples():
    x, y = blobs(100)
    seen = []

    class Spy(gpunn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.params["samples"])

    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    h = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0, callbacks=[Spy()])
    assert seen == [75]
    assert h.history["val_accuracy"][0] == pytest.approx(model.evaluate(x[75:], y[75:])[1])
    # the validation loss in the history is the loss on the last 25 samples after the epoch
    assert h.history["val_loss"][0] == pytest.approx(model.evaluate(x[75:], y[75:])[0], rel=1e-5)


def test_fit_is_deterministic_with_seed():
    x, y = blobs(64)

    def run():
        gpunn.manual_seed(3)
        model = Sequential([Dense(8, activation="relu"), Dropout(0.2), Dense(2)])
        model.compile(loss="softmax_cross_entropy", optimizer="adam")
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return model.state_dict()

    a, b = run(), run()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_fit_on_batch_iterable():
    x, y = blobs(64)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=0.05)
    h = model.fit(batches, epochs=5, validation_data=batches, verbose=0)
    assert h.history["val_accuracy"][-1] >= 0.9
    assert model.evaluate(batches)[1] == pytest.approx(h.history["val_accuracy"][-1])


def test_verbose_modes(capsys):
    x, y = blobs(40)
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    model.fit(x, y, epochs=2, verbose=2)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Epoch")]
    assert len(lines) == 2 and "accuracy" in lines[0]
    model.fit(x, y, epochs=1, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/1" in err  # tqdm writes its bar to stderr


def test_summary_lists_layers_and_totals():
    model = mlp()
    text = model.summary(print_fn=None)
    assert "Dense" in text and "('N', 16)" in text and "('N', 2)" in text
    assert f"Total params: {4 * 16 + 16 + 16 * 2 + 2:,}" in text
    model.layers[0].trainable = False
    assert "Trainable params: 34" in model.summary(print_fn=None)
    with pytest.raises(RuntimeError, match="not built"):
        Sequential([Dense(2)]).summary(print_fn=None)


def test_freeze_leaves_frozen_params_bit_identical():
    x, y = blobs(64)
    model = mlp(bn=True)
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=0.05, weight_decay=0.01)
    model.fit(x, y, epochs=1, verbose=0)  # optimizer packed with everything trainable
    model.freeze(until=2)  # the first Dense and the BatchNorm
    frozen = {k: v for k, v in model.state_dict().items() if k.startswith(("0.", "1."))}
    head = model.state_dict()["2.weight"]
    model.fit(x, y, epochs=2, verbose=0)
    after = model.state_dict()
    for k, v in frozen.items():  # weights and BatchNorm running statistics alike
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert not np.array_equal(after["2.weight"], head)
    model.unfreeze(start=1)
    model.fit(x, y, epochs=1, verbose=0)
    after2 = model.state_dict()
    np.testing.assert_array_equal(after2["0.weight"], frozen["0.weight"])
    assert not np.array_equal(after2["1.gamma"], frozen["1.gamma"])


def test_freeze_by_name_and_bad_reference():
    model = Sequential([Dense(4, name="base", input_shape=(3,)), Dense(2, name="head")])
    model.freeze(until="head")
    assert [layer.trainable for layer in model.layers] == [False, True]
    model.unfreeze()
    assert all(p.trainable for p in model.parameters())
    with pytest.raises(ValueError, match="'until'"):
        model.freeze(until="nope")
    with pytest.raises(ValueError, match="'until'"):
        model.freeze(until=5)


def test_pop_and_new_head():
    x, y = blobs(64)
    base = mlp()
    base.compile(loss="softmax_cross_entropy", optimizer="adam")
    base.fit(x, y, epochs=1, verbose=0)
    old_head = base.pop()
    assert len(base) == 1 and isinstance(old_head, Dense)
    base.add(Dense(3))
    base.compile(loss="softmax_cross_entropy", optimizer="adam")
    base.fit(x, y, epochs=1, verbose=0)
    assert base.predict(x[:5]).shape == (5, 3)


def test_to_moves_params_and_optimizer_state(backend):
    x, y = blobs(48)
    with gpunn.use_backend("numpy"):
        gpunn.manual_seed(0)
        ref = mlp()
        ref.compile(loss="softmax_cross_entropy", optimizer="adam", lr=0.01)
        ref.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
        gpunn.manual_seed(0)
        moved = mlp()
        moved.compile(loss="softmax_cross_entropy", optimizer="adam", lr=0.01)
        moved.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    moved.to(backend.name)
    assert all(backend.is_native(p.data) for p in moved.parameters())
    assert moved.optimizer.step_count == 3
    moved.fit(x, y, epochs=2, initial_epoch=1, batch_size=16, verbose=0, shuffle=False)
    with gpunn.use_backend("numpy"):
        ref.fit(x, y, epochs=2, initial_epoch=1, batch_size=16, verbose=0, shuffle=False)
    a = ref.state_dict()
    with gpunn.use_backend(backend.name):
        b = moved.state_dict()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert moved.optimizer.step_count == 6


def test_regularization_loss_is_in_the_objective():
    x, y = blobs(32)
    plain = Sequential([Dense(2, input_shape=(4,))])
    reg = Sequential([Dense(2, input_shape=(4,), kernel_regularizer="l2")])
    reg.build((4,))
    plain.build((4,))
    plain.load_state_dict(reg.state_dict())
    for m in (plain, reg):
        m.compile(loss="softmax_cross_entropy", optimizer="sgd")
    w = reg.layers[0].params["weight"].data
    assert reg.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.01 * float((w * w).sum()), rel=1e-5)


# -- bad input --------------------------------------------------------------------------------
@pytest.fixture
def compiled():
    model = mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("kwargs, match", [
    ({"y": np.zeros(9, dtype=np.int64)}, "same number of samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -3}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"validation_split": -0.1}, "validation_split"),
    ({"validation_split": 0.001}, "validation_split"),
    ({"epochs": -1}, "epochs"),
    ({"verbose": 3}, "verbose"),
    ({"validation_data": (np.zeros((3, 4), np.float32),)}, "validation_data"),
    ({"validation_data": (np.zeros((3, 4), np.float32), np.zeros(2))}, "same number of samples"),
])
def test_fit_bad_arguments(compiled, kwargs, match):
    x, y = blobs(10)
    args = {"y": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        compiled.fit(x, epochs=kwargs.get("epochs", 1), verbose=kwargs.get("verbose", 0),
                     **{k: v for k, v in args.items() if k not in ("epochs", "verbose")})


def test_fit_bad_data(compiled):
    x, y = blobs(10)
    with pytest.raises(TypeError, match="floating-point"):
        compiled.fit(x.astype(np.int64), y, verbose=0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compiled.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match="at least one sample"):
        compiled.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="'y' is required"):
        compiled.fit(x, verbose=0)
    with pytest.raises(TypeError, match="Callback"):
        compiled.fit(x, y, verbose=0, callbacks=[object()])


def test_compile_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match="compile: .*'loss'"):
        model.compile(loss="softmax_cross_entropyy")
    with pytest.raises(ValueError, match="compile: .*metric"):
        model.compile(loss="mse", metrics=["accuracyy"])
    with pytest.raises(ValueError, match="compile: .*'name'"):
        model.compile(loss="mse", optimizer="adamm")
    with pytest.raises(TypeError, match="optimizer"):
        model.compile(loss="mse", optimizer=3)
    with pytest.raises(ValueError, match="duplicate"):
        model.compile(loss="mse", metrics=["accuracy", "accuracy"])
    with pytest.raises(RuntimeError, match="not compiled"):
        model.fit(*blobs(8), verbose=0)
    with pytest.raises(RuntimeError, match="not compiled"):
        model.evaluate(*blobs(8))
