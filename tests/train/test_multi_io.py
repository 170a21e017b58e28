"""The issue's done-when for models beyond a chain: a functional model with two inputs, a shared
layer, a merge and two outputs, and a subclassed model with an `if` in call(), each trains, saves,
loads and predicts identically after loading (and resumes training identically)."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Input, Model
from gpunn.io import CheckpointError, register_serializable
from gpunn.layers import Add, Concatenate, Dense, Dropout


def pair_data(n=96, seed=0):
    """Two views of each sample; the class and the target depend on both."""
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((n, 6)).astype(np.float32)
    right = rng.standard_normal((n, 6)).astype(np.float32)
    cls = ((left[:, 0] + right[:, 0]) > 0).astype(np.int64) + ((left[:, 1] - right[:, 1]) > 1).astype(np.int64)
    reg = (left[:, 2:3] * right[:, 3:4]).astype(np.float32)
    return left, right, cls, reg


def two_tower() -> Model:
    left, right = Input((6,), name="left"), Input((6,), name="right")
    tower = Dense(16, activation="relu", name="tower")  # shared by both inputs
    a, b = tower(left), tower(right)
    joined = Concatenate(name="joined")([Add(name="sum")([a, b]), a])
    hidden = Dropout(0.1)(Dense(16, activation="tanh", name="hidden")(joined))
    return Model(inputs=[left, right], outputs=[Dense(3, name="cls")(hidden), Dense(1, name="reg")(hidden)],
                 name="two_tower")


def assert_same_predictions(a, b, x):
    pa, pb = a.predict(x, batch_size=17), b.predict(x, batch_size=17)
    if isinstance(pa, list):
        assert isinstance(pb, list) and len(pa) == len(pb)
        for u, v in zip(pa, pb):
            np.testing.assert_array_equal(u, v)
    else:
        np.testing.assert_array_equal(pa, pb)


def test_functional_two_inputs_shared_merge_two_outputs(backend, tmp_path):
    gpunn.manual_seed(0)
    left, right, cls, reg = pair_data()
    model = two_tower()
    model.compile(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights={"reg": 0.5},
                  optimizer="adam", metrics={"cls": ["accuracy"]}, lr=0.01)
    history = model.fit({"left": left, "right": right}, {"cls": cls, "reg": reg}, epochs=12, batch_size=16,
                        verbose=0, validation_split=0.25)
    h = history.history
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy", "val_loss", "val_cls_accuracy"} <= set(h)
    assert h["loss"][-1] < 0.6 * h["loss"][0]
    assert h["cls_accuracy"][-1] > 0.75

    path = tmp_path / "two_tower.safetensors"
    model.save(path)
    loaded = gpunn.load_model(path)
    assert type(loaded) is Model and loaded.output_names == ["cls", "reg"] and loaded.input_names == ["left", "right"]
    assert list(loaded.children) == list(model.children)
    assert_same_predictions(model, loaded, [left, right])
    assert loaded.evaluate([left, right], [cls, reg]) == pytest.approx(model.evaluate([left, right], [cls, reg]))
    # optimizer state, shuffle seed and dropout generator came along: training continues identically
    more = {"epochs": 14, "batch_size": 16, "verbose": 0, "initial_epoch": model.epoch}
    gpunn.load_model(path)  # loading again restores the generator's state as saved ...
    a = model.fit([left, right], [cls, reg], **more).history["loss"]
    reloaded = gpunn.load_model(path)  # ... so this run starts from where `model`'s did
    b = reloaded.fit([left, right], [cls, reg], **more).history["loss"]
    if backend.name == "numpy":
        assert a == b
    else:
        assert a == pytest.approx(b, rel=1e-5)
    assert_same_predictions(model, reloaded, [left, right])


@register_serializable(package="tests")
class GatedNet(gpunn.Model):
    """A subclassed model with an `if` in call(): a residual branch that only training takes."""

    def __init__(self, hidden: int = 16, classes: int = 3, name: str | None = None) -> None:
        super().__init__(name=name)
        self.hidden, self.classes = hidden, classes
        self.embed = Dense(hidden, activation="relu")
        self.branch = Dense(hidden, activation="tanh")
        self.head = Dense(classes)

    def call(self, x, training=False):
        h = self.embed(x)
        if training:
            h = Add()([h, self.branch(h)])
        else:
            h = Add()([h, self.branch(self.branch(h))])  # another path at inference: the same layers
        return self.head(h)

    def get_config(self):
        return {"hidden": self.hidden, "classes": self.classes, "name": self.name}


def test_subclassed_with_an_if_in_call(backend, tmp_path):
    gpunn.manual_seed(1)
    left, right, cls, _ = pair_data()
    x = np.concatenate([left, right], axis=1)
    model = GatedNet(hidden=24, name="gated")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], lr=0.01)
    history = model.fit(x, cls, epochs=12, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]

    path = tmp_path / "gated.safetensors"
    model.save(path)
    loaded = gpunn.load_model(path)
    assert type(loaded) is GatedNet and loaded.hidden == 24 and loaded.name == "gated"
    assert list(loaded.children) == ["embed", "branch", "head"]
    assert_same_predictions(model, loaded, x)
    more = {"epochs": 14, "batch_size": 16, "verbose": 0, "initial_epoch": model.epoch}
    gpunn.load_model(path)
    a = model.fit(x, cls, **more).history["loss"]
    b = gpunn.load_model(path).fit(x, cls, **more).history["loss"]
    assert a == pytest.approx(b, rel=1e-6 if backend.name == "numpy" else 1e-5)


def test_an_unregistered_subclass_saves_its_weights_only(tmp_path):
    class Local(gpunn.Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x, training=False):
            return self.d(x)

    model = Local()
    model.compile(loss="mse", optimizer="sgd")
    x = np.ones((4, 3), np.float32)
    model.train_on_batch(x, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="register the class with gpunn.io.register_serializable and define "
                                         "get_config.*save_weights"):
        model.save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    model.save_weights(tmp_path / "w.safetensors")
    fresh = Local()  # not yet run: built from the file's shapes
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_weights_of_another_subclass_are_refused(tmp_path):
    model = GatedNet(hidden=8)
    model.build((12,))
    model.save_weights(tmp_path / "w.safetensors")
    other = GatedNet(hidden=9)
    with pytest.raises(CheckpointError, match="does not match this model"):
        other.load_weights(tmp_path / "w.safetensors")


def test_a_subclass_compiled_before_its_first_forward_saves(tmp_path):
    model = GatedNet(hidden=4)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    x = np.ones((3, 12), np.float32)
    model.predict(x)  # built by inference alone: compile's outputs were not resolved by a batch yet
    model.save(tmp_path / "m.safetensors")
    loaded = gpunn.load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    y = np.zeros(3, np.int64)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y))  # [loss, accuracy] for both
