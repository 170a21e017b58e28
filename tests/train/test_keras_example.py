"""The documented Keras-style workflow (docs/keras-workflow.md) end to end on the digits, shortened."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gpunn
from gpunn.callbacks import EarlyStopping, ModelCheckpoint
from gpunn import Sequential
from gpunn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    from gpunn.data import load_digits, train_test_split
    x, y = load_digits()
    return train_test_split(x, y, test_fraction=0.2)


def test_keras_style_example(digits, tmp_path, backend):
    (x_train, y_train), (x_test, y_test) = digits
    model = Sequential()
    model.add(Flatten(input_shape=(1, 8, 8)))
    model.add(Dense(64, activation="relu", kernel_initializer="he_normal"))
    model.add(Dropout(0.2))
    model.add(Dense(10))
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=3e-3)
    ckpt = tmp_path / "best.safetensors"
    history = model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0, validation_data=(x_test, y_test),
                        callbacks=[EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
                                   ModelCheckpoint(ckpt, monitor="val_accuracy", save_best_only=True)])
    loss, acc = model.evaluate(x_test, y_test)
    assert acc >= 0.9, f"digits test accuracy {acc}"
    assert model.predict(x_test[:5]).shape == (5, 10)
    best = gpunn.load_model(ckpt)
    assert best.evaluate(x_test, y_test)[1] == pytest.approx(max(history.history["val_accuracy"]))
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    assert Path(history.plot(tmp_path / "h.png")).read_bytes()[:4] == b"\x89PNG"


def test_transfer_learning_example(digits, tmp_path):
    (x_train, y_train), (x_test, y_test) = digits
    x_train, y_train = x_train[:600], y_train[:600]  # shortened: the test checks the mechanics
    first, second = y_train < 5, y_train >= 5
    gpunn.manual_seed(0)
    base = Sequential([Conv2D(8, 3, padding="same", input_shape=(1, 8, 8)), BatchNorm(), ReLU(), MaxPool2D(2),
                       Conv2D(8, 3, padding="same"), BatchNorm(), ReLU(), Flatten(), Dense(5, name="source_head")])
    base.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=3e-3)
    base.fit(x_train[first], y_train[first], epochs=3, batch_size=32, verbose=0)
    base.save(tmp_path / "source.safetensors")

    model = gpunn.load_model(tmp_path / "source.safetensors")
    model.pop()
    model.add(Dense(5, name="target_head"))
    model.freeze(until="target_head")
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=3e-3)
    frozen = {k: v for k, v in model.state_dict().items() if not k.startswith("8.")}
    model.fit(x_train[second], y_train[second] - 5, epochs=3, batch_size=32, verbose=0)
    after = model.state_dict()
    for k, v in frozen.items():  # the base, BatchNorm statistics included, did not move
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    head_acc = model.evaluate(x_test[y_test >= 5], y_test[y_test >= 5] - 5)[1]
    assert head_acc >= 0.7, f"new head on frozen features: accuracy {head_acc}"

    model.unfreeze(start=4)
    model.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"], lr=1e-4)
    model.fit(x_train[second], y_train[second] - 5, epochs=1, batch_size=32, verbose=0)
    tuned = model.state_dict()
    np.testing.assert_array_equal(tuned["0.weight"], frozen["0.weight"])  # block 1 still frozen
    assert not np.array_equal(tuned["4.weight"], frozen["4.weight"])      # block 2 fine-tuned
